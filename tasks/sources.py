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
import uuid
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


def offline() -> bool:
    """HF_HUB_OFFLINE set, or a dataset mirror in use: the Hub is never contacted."""
    if os.environ.get("SEQFLOW_MIRROR", "").strip():
        return True
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def cached_commits(source: Source) -> dict[str, Path]:
    """{commit: arrow cache folder} of a Hub dataset that `datasets` has already prepared under
    data/hf (<org>___<name>/<config>/<version>/<commit>), newest first."""
    from datasets.naming import camelcase_to_snakecase

    parts = source.given.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    root = data_dir() / "hf" / "___".join(parts)
    found = [p for p in root.glob(f"{source.config or '*'}/*/*")
             if p.is_dir() and COMMIT.match(p.name)]  # fmt: skip
    return {p.name: p for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)}


def _not_cached(source: Source, rev: str, cached: dict) -> SourceError:
    held = f"; cached: {', '.join(cached)}" if cached else ""
    return SourceError(
        f"data.source {source.given!r} (revision {rev}): HF_HUB_OFFLINE is set or a mirror is "
        f"in use, and that revision is not in the cache {data_dir() / 'hf'}{held}. Run once "
        "with HF_HUB_OFFLINE=0 and no --mirror/SEQFLOW_MIRROR to download it, set "
        "data.revision to a cached commit, or give a local dataset folder"
    )


def resolved_revision(source: Source) -> str:
    """The commit a Hub dataset's revision points at: asked of the Hub, or offline the cached
    commit (a commit given as data.revision must be in the cache; a branch name takes the newest
    cached commit, the one `datasets` itself would read)."""
    rev = source.revision or "main"
    if offline():
        cached = cached_commits(source)
        if COMMIT.match(rev) and rev in cached:
            return rev
        if not COMMIT.match(rev) and cached:
            return next(iter(cached))
        raise _not_cached(source, rev, cached)
    if COMMIT.match(rev):
        return rev
    from huggingface_hub import HfApi

    try:
        return HfApi().dataset_info(source.given, revision=rev).sha or rev
    except Exception as err:  # unknown id, no access, no answer
        raise SourceError(
            f"data.source {source.given!r} (revision {rev}): the Hub did not answer ({err}); "
            "check the id, or set HF_HUB_OFFLINE=1 to use the cached copy"
        ) from None


def _from_cache(source: Source, commit: str, streaming: bool) -> dict:
    """A Hub dataset prepared earlier, read from its arrow cache at exactly that commit (offline:
    load_dataset would take the newest cached commit whatever the revision asked)."""
    from datasets.packaged_modules.cache.cache import Cache

    folder = cached_commits(source)[commit]
    builder = Cache(
        cache_dir=str(data_dir() / "hf"),
        dataset_name=source.given.split("/")[-1],
        repo_id=source.given,
        config_name=folder.parts[-3],
        version=folder.parts[-2],
        hash=commit,
    )
    return builder.as_streaming_dataset() if streaming else builder.as_dataset()


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
    """The identity's hash. Local data is its files' names (relative to their folder) and bytes,
    not where they lie: the same files copied to another folder have the same fingerprint."""
    return hashlib.sha256(json.dumps(keyed(ident), sort_keys=True).encode()).hexdigest()


def keyed(ident: dict) -> dict:
    """The identity as stage keys see it: a local source without its path."""
    return ident if ident.get("kind") == "hub" else {k: v for k, v in ident.items() if k != "name"}


def load(source: Source, *, streaming: bool = False, by_document: bool = False) -> dict:
    """{split name: Dataset (or IterableDataset when streaming)} through datasets.load_dataset,
    cached under data/hf. by_document: a .txt file is one row (text builder), not a line each."""
    import datasets

    datasets.disable_progress_bars()
    kwargs = {"cache_dir": str(data_dir() / "hf"), "streaming": streaming}
    if empty := [str(f) for f in local_files(source) if f.stat().st_size == 0]:
        raise SourceError(
            f"data.source {source.given!r}: {', '.join(empty)} is empty (0 bytes); remove it "
            "from the source or give it rows"
        )
    try:
        if source.kind == "files":
            options = dict(source.options)
            if source.builder == "text" and by_document:
                options["sample_by"] = "document"
            found = datasets.load_dataset(
                source.builder, data_files={"train": list(source.files)}, **options, **kwargs
            )
        elif source.kind == "hub":  # at the resolved commit: the one its identity names
            commit = resolved_revision(source)
            if offline():  # never the network, whatever `datasets` read at import time
                found = _from_cache(source, commit, streaming)
            else:
                found = datasets.load_dataset(
                    source.given, source.config, revision=commit, **kwargs
                )
        else:
            path = str(Path(source.given).expanduser())
            found = datasets.load_dataset(path, source.config, revision=source.revision, **kwargs)
    except SourceError:
        raise
    except ValueError as err:
        if "corresponds to no data" in str(err):  # a header and no rows
            raise empty_split(source, "train") from None
        raise SourceError(
            f"data.source {source.given!r} could not be read by datasets.load_dataset: {err}"
        ) from None
    except (FileNotFoundError, datasets.exceptions.DatasetNotFoundError) as err:
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
    if dtype == "bool":
        return "number"
    if type(feature).__name__ in ("List", "LargeList", "Sequence") or isinstance(feature, list):
        return "list"  # a list of tokens is not a text: say so rather than pass it on
    return None if feature is None else str(dtype or type(feature).__name__).lower()


def empty_split(source: Source, role: str) -> SourceError:
    if role in ("validation", "test"):
        fix = (f"give a source with rows in its {role} split, or, where it is carved from train, "
               f"more rows or a larger data.{role}_fraction")  # fmt: skip
    else:
        fix = "give a source with rows there (data.train_split names the split read)"
    return SourceError(f"data.source {source.given!r}: split {role!r} is empty; {fix}")


def check_columns(ds, role: str, wanted: dict, source: Source) -> None:
    """wanted: {config key: (column or 'column.key', kinds allowed)}. A missing column names the
    ones there are; a column of the wrong type, or a dict lacking the key, says which."""
    columns = _columns_of(ds)
    if not columns or (hasattr(ds, "__len__") and len(ds) == 0):  # a stream: its first row
        raise empty_split(source, role)
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
            if langs is None and feature is not None:
                raise SourceError(
                    f"data.source {source.given!r}: column {name!r} (data.{key} = {column!r}) "
                    f"holds {_kind_of(feature) or feature} values, not a dict of languages; map "
                    f"data.{key} to a dict column such as 'translation', or name the column of "
                    "that language's texts"
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


def incoming_source(pipeline: str, source: Source | None = None) -> Source | None:
    """New files dropped for a pipeline reading your own data: data/incoming/<pipeline>/ files
    of a format `datasets` reads (the source's own format when it is files), name order."""
    folder = data_dir() / "incoming" / pipeline
    formats = {Path(f).suffix.lower() for f in source.files} if source and source.kind == "files" \
        else set(FORMATS)  # fmt: skip
    files = sorted(str(p) for p in folder.glob("*") if p.is_file()
                   and not p.name.startswith(".") and p.suffix.lower() in formats)  # fmt: skip
    if not files:
        return None
    builder, options = _format(files, str(folder))
    return Source(str(folder), "files", tuple(files), builder, options)


def incoming_rows(inc: Source, wanted: dict, streaming: bool, by_document: bool):
    """The incoming files' mapped columns, one dataset; each file read and checked on its own,
    so an error names the file."""
    import datasets

    top = sorted({c.partition(".")[0] for c, _ in wanted.values()})
    parts = []
    for f in inc.files:
        one = Source(f, "files", (f,), inc.builder, inc.options)
        rows = load(one, streaming=streaming, by_document=by_document)["train"]
        check_columns(rows, "incoming", wanted, one)
        parts.append(rows.select_columns(top))
    try:
        return datasets.concatenate_datasets(parts)
    except Exception as err:  # the same columns with other types in two files
        raise SourceError(
            f"the files in {inc.given} disagree on their columns' types ({err}); make them alike"
        ) from None


def _row_key(row: dict, columns: list[str]) -> str:
    return json.dumps([_value(row, c) for c in columns], sort_keys=True, default=str)


def new_rows(incoming, known: list, wanted: dict):
    """The incoming rows whose mapped values no row of `known` (the source's splits, evaluation
    ones included: a test row must never become a training row) has, nor an earlier incoming
    row: (dataset, duplicates dropped). A stream is taken whole (nothing cheap to compare)."""
    columns = [c for c, _ in wanted.values()]
    if not all(hasattr(d, "__len__") for d in [incoming, *known]):
        return incoming, 0
    seen = {_row_key(r, columns) for ds in known for r in ds}

    def first_time(row) -> bool:
        key = _row_key(row, columns)
        new = key not in seen
        seen.add(key)
        return new

    keep = incoming.filter(first_time, load_from_cache_file=False, new_fingerprint=uuid.uuid4().hex)
    return keep, len(incoming) - len(keep)


def data_fingerprint(cfg, wanted: dict, pipeline: str | None = None) -> str:
    """The fingerprint of a data section's own source, mapping and incoming files (no rows
    read). pipeline: whose data/incoming/ files count, when data.incoming is set."""
    source = locate(cfg.source, cfg.config, cfg.revision)
    return fingerprint(_identity(source, wanted, cfg, pipeline))


def _identity(source: Source, wanted: dict, cfg, pipeline: str | None) -> dict:
    ident = identity(source, {k: c for k, (c, _) in wanted.items()})
    if pipeline and getattr(cfg, "incoming", False):
        if (inc := incoming_source(pipeline, source)) is not None:
            ident["incoming"] = identity(inc, {})["files"]
    return ident


def open_source(
    cfg, wanted: dict, *, by_document: bool = False, pipeline: str | None = None,
    whole: bool = False,
):  # fmt: skip
    """(Source, identity, role -> dataset, carve record) of a data section whose source is not
    'course', every mapped column checked in every split before any stage (whole: the train
    split only, uncarved: pick_splits). With data.incoming and a pipeline, its new files
    (incoming_source) join as role "incoming", checked the same way, their rows already in the
    source dropped: only ever training rows, never evaluation ones."""
    source = locate(cfg.source, cfg.config, cfg.revision)
    ident = _identity(source, wanted, cfg, pipeline)
    found = load(source, streaming=cfg.streaming, by_document=by_document)
    names = {"train": cfg.train_split, "validation": cfg.validation_split, "test": cfg.test_split}
    fractions = {"validation": cfg.validation_fraction, "test": cfg.test_fraction}
    splits, carved = pick_splits(found, names, fractions, cfg.split_seed, source, whole)
    for role, ds in splits.items():
        check_columns(ds, role, wanted, source)
    if "incoming" in ident:
        inc = incoming_source(pipeline, source)
        rows = incoming_rows(inc, wanted, cfg.streaming, by_document)
        splits["incoming"], dropped = new_rows(rows, list(splits.values()), wanted)
        carved["incoming"] = {"files": len(inc.files), "duplicate_rows": dropped}
    return source, ident, splits, carved


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_source(
    pipeline: str, cfg, wanted: dict, columns: dict, *, merged: bool = False,
    by_document: bool = False, limit: int | None = None,
) -> StageOutput:  # fmt: skip
    """Any source -> {train,validation,test}.parquet in the mapped `columns` (merged: one
    rows.parquet of all splits in that order, for word2vec, which trains on every row)."""
    source, ident, splits, carved = open_source(cfg, wanted, by_document=by_document,
                                                pipeline=pipeline)  # fmt: skip
    shown = ", ".join(f"{r}{' (carved)' if r in carved else ''}" for r in splits)
    run_logger().info("source %s (%s): %s", source.name, source.kind, shown)

    def build(out: Path) -> dict:
        stats: dict = {"source": source.name, "kind": source.kind, "carved": carved, "rows": {}}

        def tables(role):  # train: the source's (up to limit), then any new incoming rows
            yield from rows_table(splits[role], columns, limit if role == "train" else None)
            if role == "train" and "incoming" in splits:
                yield from rows_table(splits["incoming"], columns)

        roles = [r for r in splits if r != "incoming"]
        if merged:
            every = (t for role in roles for t in tables(role))
            stats["rows"]["all"] = write_shards(every, out / "rows.parquet")
        else:
            for role in roles:
                n = write_shards(tables(role), out / f"{role}.parquet")
                if n == 0:
                    raise empty_split(source, role)
                stats["rows"][role] = n
        return stats

    return run_stage(
        pipeline,
        "ingest",
        inputs={"source": fingerprint(ident)},
        params={
            "identity": keyed(ident),  # the path is in the manifest's stats
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
