"""A user's own data: a Hugging Face dataset (Hub id or local dataset folder) or local files,
read through `datasets`, checked against the config's column mapping, split, fingerprinted.

One reader for every pipeline: `locate` names the source, `identity` fingerprints it (file
sha256s or the Hub revision, plus the mapping), `load` opens it with `datasets.load_dataset`,
`pick_splits` finds or carves train/validation/test, `check_columns` checks the mapping before
any stage, and `ingest_source` writes the mapped columns to the ingest stage's Parquet. What
comes after ingest sees that Parquet only, never where it came from.
"""

import glob
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.settings import data_dir
from tasks.engine.shards import write_shards
from tasks.engine.stage import StageOutput, run_logger, run_stage, sha256_file

# extension -> (datasets builder, its options)
FORMATS = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
    ".txt": ("text", {}),
}
ROLES = ("train", "validation", "test")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
BATCH = 4096  # rows read from `datasets` at a time


class SourceError(ValueError):
    """A source that cannot be read as configured; the message names it and the fix."""


@dataclass(frozen=True)
class Source:
    given: str  # as the user wrote it (data.source)
    kind: str  # "hub", "folder" or "files"
    files: tuple[str, ...] = ()  # folder/files: the files read, sorted
    builder: str | None = None  # files: the `datasets` builder their extension names
    options: dict = field(default_factory=dict, hash=False, compare=False)
    config: str | None = None  # a Hub/folder dataset's configuration name
    revision: str | None = None  # Hub: branch, tag or commit

    @property
    def name(self) -> str:
        return self.given if self.kind == "hub" else str(Path(self.given).expanduser().resolve())


def _globbed(given: str) -> bool:
    return any(c in given for c in "*?[")


def _pathlike(given: str) -> bool:
    ext = os.path.splitext(given)[1].lower()
    return given.startswith(("/", "./", "../", "~")) or ext in FORMATS or os.sep in given[:1]


def _format(files: list[str], given: str) -> tuple[str, dict]:
    exts = sorted({os.path.splitext(f)[1].lower() for f in files})
    if len(exts) != 1 or exts[0] not in FORMATS:
        raise SourceError(
            f"data.source {given!r}: cannot tell the format of {', '.join(exts) or 'no extension'}"
            f"; name files of one format ({', '.join(FORMATS)})"
        )
    builder, options = FORMATS[exts[0]]
    return builder, dict(options)


def locate(given: str, config: str | None = None, revision: str | None = None) -> Source:
    """What data.source names: a local dataset folder, a file or glob, or a Hub id."""
    if not given or not given.strip():
        raise SourceError("data.source is empty: give 'course', a file, a folder or a Hub id")
    path = Path(given).expanduser()
    if path.is_dir():
        files = sorted(
            str(p.relative_to(path))
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise SourceError(f"data.source {given!r} is an empty folder: put the data files in it")
        return Source(given, "folder", tuple(files), config=config, revision=revision)
    if _globbed(given) or path.is_file():
        files = sorted(glob.glob(str(path))) if _globbed(given) else [str(path)]
        files = [f for f in files if Path(f).is_file()]
        if not files:
            raise SourceError(f"data.source {given!r} matches no file: check the pattern")
        builder, options = _format(files, given)
        return Source(given, "files", tuple(files), builder, options)
    if _pathlike(given) or not HUB_ID.match(given):
        raise SourceError(
            f"data.source {given!r}: no such file or folder (from {Path.cwd()}); give an existing "
            "path, a glob such as 'corpus/*.txt', a Hub id such as 'wmt16', or 'course'"
        )
    return Source(given, "hub", config=config, revision=revision)


def local_files(source: Source) -> list[Path]:
    """The files a folder or files source reads (none for the Hub)."""
    if source.kind == "folder":
        return [Path(source.given).expanduser() / f for f in source.files]
    return [Path(f) for f in source.files]


def resolved_revision(source: Source) -> str:
    """The commit a Hub dataset's revision points at (asked of the Hub unless offline, where a
    commit given as data.revision is taken as is and a branch name is kept as given)."""
    rev = source.revision or "main"
    if COMMIT.match(rev) or os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        return rev
    from huggingface_hub import HfApi

    try:
        return HfApi().dataset_info(source.given, revision=rev).sha or rev
    except Exception as err:  # offline, unknown id, no access
        raise SourceError(
            f"data.source {source.given!r} (revision {rev}): the Hub did not answer ({err}); "
            "check the id, or set HF_HUB_OFFLINE=1 to use the cached copy"
        ) from None


def identity(source: Source, mapping: dict) -> dict:
    """What the data is: file names and sha256s (folder, files) or id, config and resolved
    revision (Hub), plus the column mapping. Its fingerprint keys every stage after it."""
    out: dict = {"kind": source.kind, "name": source.name, "mapping": mapping}
    if source.kind == "hub":
        out |= {"config": source.config, "revision": resolved_revision(source)}
    else:  # files named relative to their folder: the same data anywhere has the same identity
        paths = [Path(p).resolve() for p in local_files(source)]
        top = Path(os.path.commonpath([p.parent for p in paths]))
        out["files"] = {str(p.relative_to(top)): sha256_file(p) for p in paths}
        out["config"] = source.config
    return out


def fingerprint(ident: dict) -> str:
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


def load(source: Source, *, streaming: bool = False, by_document: bool = False) -> dict:
    """{split name: Dataset (or IterableDataset when streaming)} through datasets.load_dataset,
    cached under data/hf. by_document: a .txt file is one row (text builder), not a line each."""
    import datasets

    datasets.disable_progress_bars()
    kwargs = {"cache_dir": str(data_dir() / "hf"), "streaming": streaming}
    try:
        if source.kind == "files":
            options = dict(source.options)
            if source.builder == "text" and by_document:
                options["sample_by"] = "document"
            found = datasets.load_dataset(
                source.builder, data_files={"train": list(source.files)}, **options, **kwargs
            )
        else:
            path = source.given if source.kind == "hub" else str(Path(source.given).expanduser())
            found = datasets.load_dataset(path, source.config, revision=source.revision, **kwargs)
    except (FileNotFoundError, ValueError, datasets.exceptions.DatasetNotFoundError) as err:
        raise SourceError(
            f"data.source {source.given!r} could not be read by datasets.load_dataset: {err}"
        ) from None
    except Exception as err:  # a malformed file: pyarrow/json errors surface as several types
        raise SourceError(
            f"data.source {source.given!r}: {type(err).__name__}: {err}. Check that every file "
            "is well-formed in its format"
        ) from None
    return dict(found)


def _share(seed: int, i: int) -> float:
    """Row i's place in [0, 1): a fixed function of the seed and the index (streams too)."""
    h = hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def pick_splits(
    found: dict, names: dict, fractions: dict, seed: int, source: Source, whole: bool = False
):
    """(role -> dataset, carve record). A role whose split the source lacks is carved from
    train by a seeded per-row draw: fractions[role] of the rows, the same rows every time.
    whole: the train split alone, never carved (a time series is split by time later)."""
    if names["train"] not in found:
        raise SourceError(
            f"data.source {source.given!r} has no split {names['train']!r} (data.train_split); "
            f"its splits: {', '.join(found)}. Set data.train_split to one of them"
        )
    train = found[names["train"]]
    if whole:
        return {"train": train}, {}
    out, carved, cut = {"train": train}, {}, 0.0
    for role in ("validation", "test"):
        if names.get(role) and names[role] in found:
            out[role] = found[names[role]]
            continue
        lo, hi = cut, cut + fractions[role]
        cut = hi
        out[role] = train.filter(lambda _, i, lo=lo, hi=hi: lo <= _share(seed, i) < hi,
                                 with_indices=True)  # fmt: skip
        carved[role] = {"from": names["train"], "fraction": fractions[role], "seed": seed}
    if carved:
        out["train"] = train.filter(lambda _, i: _share(seed, i) >= cut, with_indices=True)
    return out, carved


def _columns_of(ds) -> dict:
    """{column: feature} of a dataset; a stream without declared features shows its first row."""
    if ds.features is not None:
        return dict(ds.features)
    first = next(iter(ds), None)
    return {k: None for k in (first or {})}


def _kind_of(feature) -> str | None:
    dtype = getattr(feature, "dtype", None)
    if dtype in ("string", "large_string"):
        return "string"
    if dtype and any(t in dtype for t in ("int", "float", "double")):
        return "number"
    if dtype and "timestamp" in dtype or dtype in ("date32", "date64"):
        return "time"
    if isinstance(feature, dict) or type(feature).__name__ in ("Translation", "dict"):
        return "dict"
    return None


def check_columns(ds, role: str, wanted: dict, source: Source) -> None:
    """wanted: {config key: (column or 'column.key', kinds allowed)}. A missing column names the
    ones there are; a column of the wrong type, or a dict lacking the key, says which."""
    columns = _columns_of(ds)
    if not columns:
        raise SourceError(
            f"data.source {source.given!r}: split {role!r} is empty; give a source with rows "
            "there, or lower data.validation_fraction / data.test_fraction if it was carved"
        )
    for key, (column, kinds) in wanted.items():
        name, _, inner = column.partition(".")
        if name not in columns:
            raise SourceError(
                f"data.source {source.given!r} has no column {name!r} (data.{key}); its "
                f"columns: {', '.join(columns)}. Set --set data.{key}=<one of them>"
            )
        feature = columns[name]
        if inner:
            langs = getattr(feature, "languages", None) or (
                list(feature) if isinstance(feature, dict) else None
            )
            if langs is not None and inner not in langs:
                raise SourceError(
                    f"data.source {source.given!r}: column {name!r} has no language {inner!r} "
                    f"(data.{key}); it holds {', '.join(map(str, langs))}. Set data.{key} to "
                    "one of them"
                )
            continue
        kind = _kind_of(feature) if feature is not None else None
        if kind is not None and kind not in kinds:
            raise SourceError(
                f"data.source {source.given!r}: column {name!r} (data.{key}) holds {kind} "
                f"values ({feature}), expected {' or '.join(kinds)}; map data.{key} to a "
                "column of that type or fix the file"
            )


def _value(row: dict, column: str):
    name, _, inner = column.partition(".")
    value = row[name]
    return value[inner] if inner else value


def rows_table(ds, columns: dict, limit: int | None = None):
    """Batches of the mapped columns ({output name: source column or 'column.key'}) as pyarrow
    tables; a stream is read BATCH rows at a time."""
    batch: dict[str, list] = {k: [] for k in columns}
    n = 0
    for row in ds:
        if limit is not None and n >= limit:
            break
        for out, column in columns.items():
            batch[out].append(_value(row, column))
        n += 1
        if n % BATCH == 0:
            yield pa.table(batch)
            batch = {k: [] for k in columns}
    if batch and any(batch.values()):
        yield pa.table(batch)


def data_fingerprint(cfg, wanted: dict) -> str:
    """The fingerprint of a data section's own source and mapping (no rows read)."""
    source = locate(cfg.source, cfg.config, cfg.revision)
    return fingerprint(identity(source, {k: c for k, (c, _) in wanted.items()}))


def open_source(cfg, wanted: dict, *, by_document: bool = False, whole: bool = False):
    """(Source, identity, role -> dataset, carve record) of a data section whose source is not
    'course', every mapped column checked in every split before any stage (whole: the train
    split only, uncarved: pick_splits)."""
    source = locate(cfg.source, cfg.config, cfg.revision)
    mapping = {k: c for k, (c, _) in wanted.items()}
    ident = identity(source, mapping)
    found = load(source, streaming=cfg.streaming, by_document=by_document)
    names = {"train": cfg.train_split, "validation": cfg.validation_split, "test": cfg.test_split}
    fractions = {"validation": cfg.validation_fraction, "test": cfg.test_fraction}
    splits, carved = pick_splits(found, names, fractions, cfg.split_seed, source, whole)
    for role, ds in splits.items():
        check_columns(ds, role, wanted, source)
    return source, ident, splits, carved


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_source(
    pipeline: str, cfg, wanted: dict, columns: dict, *, merged: bool = False,
    by_document: bool = False, limit: int | None = None,
) -> StageOutput:  # fmt: skip
    """Any source -> {train,validation,test}.parquet in the mapped `columns` (merged: one
    rows.parquet of all splits in that order, for word2vec, which trains on every row)."""
    source, ident, splits, carved = open_source(cfg, wanted, by_document=by_document)
    shown = ", ".join(f"{r}{' (carved)' if r in carved else ''}" for r in splits)
    run_logger().info("source %s (%s): %s", source.name, source.kind, shown)

    def build(out: Path) -> dict:
        stats: dict = {"source": source.name, "kind": source.kind, "carved": carved, "rows": {}}
        if merged:

            def every():
                for role, ds in splits.items():
                    yield from rows_table(ds, columns, limit if role == "train" else None)

            stats["rows"]["all"] = write_shards(every(), out / "rows.parquet")
        else:
            for role, ds in splits.items():
                n = write_shards(rows_table(ds, columns, limit if role == "train" else None),
                                 out / f"{role}.parquet")  # fmt: skip
                if n == 0:
                    raise SourceError(
                        f"data.source {source.given!r}: split {role!r} is empty; give a source "
                        "with rows there, or raise data.validation_fraction / test_fraction"
                    )
                stats["rows"][role] = n
        return stats

    return run_stage(
        pipeline,
        "ingest",
        inputs={"source": fingerprint(ident)},
        params={
            "identity": ident,
            "columns": columns,
            "merged": merged,
            "limit": limit,
            "by_document": by_document,
            "splits": [cfg.train_split, cfg.validation_split, cfg.test_split],
            "fractions": [cfg.validation_fraction, cfg.test_fraction],
            "seed": cfg.split_seed,
        },  # fmt: skip
        libs=("datasets", "pyarrow"),
        build=build,
    )
