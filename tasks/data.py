"""Getting a declared dataset file onto disk (mirror, cache or download) and decoding it.

A downloaded file is streamed to a temp file beside its cache slot, hashed while it arrives and
renamed into place only once its sha256 matches the catalog: the cache never holds a partial or
unverified file.
"""

import csv
import io
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.catalog import DATASETS, DatasetSpec, SourceFile
from tasks.engine.settings import data_dir, mirror_dir
from tasks.engine.shards import write_shards
from tasks.engine.stage import StageOutput, run_logger, run_stage, sha256_file

log = logging.getLogger(__name__)


class DataSourceError(RuntimeError):
    """A dataset file could not be obtained or decoded; the message says what to do."""


def fetch(
    spec: DatasetSpec,
    name: str,
    *,
    mirror: Path | None = None,
    cache: Path | None = None,
    retries: int = 3,
    backoff: float = 1.0,
) -> Path:
    """Return a verified local path for file `name` of `spec`.

    Order: the mirror (if set: the file must be there), then the download cache, then the URL.
    """
    source = spec.file(name)
    mirror = mirror or mirror_dir()
    if mirror is not None:
        path = mirror / spec.folder / source.name
        if not path.is_file():
            raise DataSourceError(
                f"{path} is missing from the mirror {mirror}: point SEQFLOW_MIRROR/--mirror at a "
                f"folder laid out like shared/datasets/, or unset it to download {source.url}"
            )
        if (got := sha256_file(path)) != source.sha256:
            raise DataSourceError(
                f"mirror copy {path} has sha256 {got}, expected {source.sha256}: it is not the "
                f"published file. Replace it with a fresh copy of {source.url}."
            )
        return path

    target = (cache or data_dir() / "cache") / spec.folder / source.name
    if target.is_file():
        if sha256_file(target) == source.sha256:
            return target
        log.warning("cached %s does not match its sha256; downloading it again", target)
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    return download(source, target, retries=retries, backoff=backoff)


def download(source: SourceFile, target: Path, *, retries: int = 3, backoff: float = 1.0) -> Path:
    """Download `source` to `target` atomically, retrying transient failures with backoff."""
    last: Exception | None = None
    for attempt in range(1, retries + 1):
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.part")
        try:
            _stream(source.url, tmp)
            if (got := sha256_file(tmp)) != source.sha256:
                raise DataSourceError(
                    f"checksum mismatch for {source.url}: expected sha256 {source.sha256}, got "
                    f"{got}. The file changed upstream or the transfer was corrupted; nothing was "
                    "cached. Check the URL, or use a mirror (SEQFLOW_MIRROR) holding the "
                    "published file."
                )
            os.replace(tmp, target)
            return target
        except OSError as err:  # HTTPError, URLError, a refused connection, a truncated transfer
            if isinstance(err, urllib.error.HTTPError) and err.code < 500:
                raise DataSourceError(  # 404 and friends will not get better by retrying
                    f"download of {source.url} failed: HTTP {err.code} {err.reason}. Check the URL "
                    "in tasks/engine/catalog.py, or use a mirror (SEQFLOW_MIRROR)."
                ) from err
            last = err
        finally:
            tmp.unlink(missing_ok=True)
        if attempt < retries:
            wait = backoff * 2 ** (attempt - 1)
            log.warning(
                "download of %s failed (%s); retry %d in %.1fs", source.url, last, attempt, wait
            )
            time.sleep(wait)
    raise DataSourceError(
        f"download of {source.url} failed after {retries} attempts: {last}. Nothing was cached; "
        "check the network or use a mirror (SEQFLOW_MIRROR)."
    )


def _stream(url: str, tmp: Path) -> None:
    """Write url's body to tmp; a transfer cut short is a ConnectionError (retried)."""
    request = urllib.request.Request(url, headers={"User-Agent": "seqflow"})
    with urllib.request.urlopen(request, timeout=60) as resp, open(tmp, "wb") as out:
        try:
            shutil.copyfileobj(resp, out, 1 << 20)
        except Exception as e:  # a reset connection, http.client.IncompleteRead and similar
            raise ConnectionError(f"transfer interrupted after {out.tell()} bytes: {e!r}") from e
        expected = resp.headers.get("Content-Length")
        if expected is not None and out.tell() != int(expected):
            raise ConnectionError(f"transfer interrupted: got {out.tell()} of {expected} bytes")


# --- decoding --------------------------------------------------------------------------------


class DecodedText(NamedTuple):
    text: str
    decode_errors: int


def decode_utf8(raw: bytes) -> DecodedText:
    """Decode UTF-8, replacing each invalid sequence with U+FFFD and counting them (not the
    U+FFFD the bytes spell out themselves: UTF-8 resyncs at each lead byte, so those stay)."""
    text = raw.decode("utf-8", "replace")
    return DecodedText(text, text.count("\ufffd") - raw.count("\ufffd".encode()))


def _records(path: Path, reader):
    """(line it starts on, record) for each record; a quoting error names that line."""
    while True:
        start = reader.line_num + 1
        try:
            yield start, next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            if "field larger than field limit" in str(err):
                raise DataSourceError(
                    f"{path}, record starting on line {start}: a field is longer than "
                    f"{csv.field_size_limit():,} characters (the CSV reader's limit; a tweet "
                    "is at most a few hundred): split or shorten that field, or move the file "
                    "out of the folder"
                ) from None
            raise DataSourceError(
                f"{path}, record starting on line {start}: {err}. A field holding commas, "
                'quotes or line breaks must be quoted ("...") with inner quotes doubled (""): '
                "fix the quoting there"
            ) from None


class CsvTable(NamedTuple):
    columns: dict[str, list[str]]
    decode_errors: int
    bad_rows: list[int]  # 1-based data row numbers holding a replaced sequence
    lines: list[int]  # the line each data row starts on
    delimiter: str = ","  # the one its header uses


DELIMITERS = (",", ";", "\t", "|")  # a spreadsheet's "CSV" may use any of these


def sniff_delimiter(text: str, columns: tuple[str, ...]) -> str:
    """The delimiter whose split of the header line holds every one of `columns` (a comma when
    none does: the missing-columns error then shows the header as read)."""
    first = text.split("\n", 1)[0].rstrip("\r")
    for d in DELIMITERS:
        if set(columns) <= {h.strip().strip('"') for h in first.split(d)}:
            return d
    return ","


def read_csv(path: Path, columns: tuple[str, ...]) -> CsvTable:
    """Read a CSV with a header holding at least `columns`; every record becomes one row.
    Its delimiter is the one of DELIMITERS its header uses.

    Quoting is strict: an unclosed quote or text after a closing quote is an error naming the
    record, never a record that silently swallows the lines after it."""
    from tasks.filetype import problem

    raw = path.read_bytes()
    if why := problem(path, raw[:4096]):  # compressed, binary, UTF-16
        raise DataSourceError(why)
    decoded = decode_utf8(raw)
    text = decoded.text.removeprefix("\ufeff")
    delimiter = sniff_delimiter(text, columns)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records = _records(path, reader)
    header = next(records, (0, None))[1]
    if header is None:
        raise DataSourceError(f"{path} is empty: expected a CSV header with {', '.join(columns)}")
    header = [h.strip() for h in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataSourceError(
            f"{path} lacks column(s) {', '.join(missing)} (header: {', '.join(header)}); "
            "supply a CSV with the columns " + ", ".join(columns)
        )
    index = [header.index(c) for c in columns]
    out: dict[str, list[str]] = {c: [] for c in columns}
    bad_rows, lines = [], []
    for number, (line, record) in enumerate(records, start=1):
        if not record:
            continue  # a blank line is not a record
        lines.append(line)
        if len(record) != len(header):
            raise DataSourceError(
                f"{path}, record {number} (line {reader.line_num}) has {len(record)} fields, the "
                f"header has {len(header)}: fix the quoting of that line"
            )
        for c, i in zip(columns, index, strict=True):
            out[c].append(record[i])
        if decoded.decode_errors and any("\ufffd" in record[i] for i in index):
            bad_rows.append(number)
    return CsvTable(out, decoded.decode_errors, bad_rows, lines, delimiter)


# --- the ingest stage ------------------------------------------------------------------------


def incoming_files(pipeline: str, suffix: str = ".csv") -> list[Path]:
    """New data dropped for a pipeline: data/incoming/<pipeline>/*<suffix>, in name order
    (macOS `._*` metadata files skipped)."""
    found = (data_dir() / "incoming" / pipeline).glob(f"*{suffix}")  # none: no folder
    return sorted(p for p in found if p.is_file() and not p.name.startswith("._"))


def _read_rows(path: Path, spec: DatasetSpec, limit_rows: int | None = None) -> tuple:
    """(pyarrow table, decode_errors, bad_rows) of one CSV in the dataset's columns."""
    table = read_csv(path, spec.columns)
    arrays = {c: pa.array(v[: limit_rows or None], pa.string()) for c, v in table.columns.items()}
    for name in [c for c in ("id", "label") if c in arrays]:  # integer columns it has
        try:
            arrays[name] = arrays[name].cast(pa.int64())
        except pa.ArrowInvalid as err:
            raise DataSourceError(
                f"{path}: column {name!r} must hold integers ({err}); fix the file or move "
                "it out of the folder"
            ) from None
    return pa.table(arrays), table.decode_errors, table.bad_rows


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_csv(
    pipeline: str,
    dataset: str,
    file: str,
    limit_rows: int | None = None,
    incoming: list[Path] = (),
    keep: dict[str, list[bool]] | None = None,
) -> StageOutput:
    """Fetch a CSV dataset file, append any incoming CSVs, store the rows as `rows.parquet`.
    keep: per incoming file name, which rows to take (tasks/incoming.py drops the rows already
    in the source or an earlier file); the others are counted as `duplicate_rows`."""
    logger = run_logger()
    spec = DATASETS[dataset]
    path = fetch(spec, file)
    incoming = [Path(p) for p in incoming]

    def build(out: Path) -> dict:
        stats = {"source": str(path), "decode_errors": 0, "rows_from": {}, "duplicate_rows": 0}

        def tables():  # one file in memory at a time
            for source, limit in [(path, limit_rows)] + [(p, None) for p in incoming]:
                table, decode_errors, bad_rows = _read_rows(source, spec, limit)
                if keep and source.name in keep and source != path:
                    flags = keep[source.name]
                    stats["duplicate_rows"] += flags.count(False)
                    table = table.filter(pa.array(flags, pa.bool_()))
                if decode_errors:
                    logger.warning(
                        "%s: %d invalid UTF-8 sequence(s) replaced with U+FFFD in data row(s) %s",
                        source,
                        decode_errors,
                        bad_rows,
                    )
                stats["decode_errors"] += decode_errors
                stats["rows_from"][source.name] = table.num_rows
                yield table

        stats["rows"] = write_shards(tables(), out / "rows.parquet")  # row groups = shards
        if incoming:
            rows_from = stats["rows_from"].items()
            logger.info("ingest: %s", ", ".join(f"{n}: {r} rows" for n, r in rows_from))
        return stats

    return run_stage(
        pipeline,
        "ingest",
        inputs={"source": spec.file(file).sha256}
        | {f"incoming/{p.name}": sha256_file(p) for p in incoming},
        params={
            "dataset": dataset,
            "file": file,
            "limit_rows": limit_rows,
            "dropped": {n: [i for i, k in enumerate(v) if not k] for n, v in (keep or {}).items()},
        },  # fmt: skip
        libs=("pyarrow",),
        build=build,
    )
