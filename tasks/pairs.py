"""New sentence pairs for seq2seq: data/incoming/seq2seq/*.tsv, UTF-8, one `de<TAB>en` pair a
line. `seqflow ingest` and `seqflow retrain` check them at the door (every fault named with its
file and line; nothing copied, nothing trained); the `add_pairs` stage appends the new ones to
the train split.

Rules: the file is UTF-8; every line holds exactly one tab with text on both sides, no control
characters and at most MAX_CHARS characters a side (a last line may end the file without a
newline; blank lines are faults: they would shift every pair after them). A pair equal (sides
stripped) to one of the train split the run reads (`data.limit_train` reads fewer) or of an
earlier file is a duplicate: dropped and counted. Files are read in name order.

As users save them: a UTF-8 byte-order mark is dropped; a first line naming the columns (the
split's language codes such as `de<TAB>en`, or `src<TAB>trg`, `source<TAB>target`,
`german<TAB>english`; any case) is a header: skipped and reported; a compressed file or other
binary data is named as such, whatever its extension (tasks/filetype.py).
"""

import hashlib
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.stage import StageOutput, read_manifest, run_stage, sha256_file, write_table
from tasks.filetype import problem
from tasks.incoming import Fault, Ledger, Report

MAX_CHARS = 1000  # a side; Multi30k's longest is under 300
HEADERS = {("src", "trg"), ("source", "target"), ("german", "english"), ("deutsch", "englisch")}


def _key(src: str, trg: str) -> bytes:
    return hashlib.sha256(f"{src.strip()}\t{trg.strip()}".encode()).digest()


def is_header(line: str, langs: tuple[str, str] = ("de", "en")) -> bool:
    """Whether a first line names the columns (any case) rather than holding a pair."""
    names = tuple(part.strip().lower() for part in line.split("\t"))
    return names in HEADERS | {tuple(lang.lower() for lang in langs)}


def read_tsv(path: Path, faults: list[Fault], langs: tuple[str, str] = ("de", "en"),
             skipped: list[int] | None = None) -> list[tuple[int, str, str]]:  # fmt: skip
    """(line number, de, en) of every well-formed line; the faults of the others. A header
    line (is_header) is skipped, its number added to `skipped`."""
    raw = path.read_bytes()
    if why := problem(path, raw[:4096]):  # compressed or binary: no line of it is text
        faults.append(Fault(str(path), 0, why))
        return []
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        faults.append(Fault(str(path), line, f"not UTF-8 (byte {err.start}): save it as UTF-8"))
        return []
    pairs = []
    for n, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line and n == text.count("\n") + 1:
            break  # the newline that ends the file
        if n == 1 and is_header(line, langs):
            if skipped is not None:
                skipped.append(n)
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            what = "a blank line" if not line.strip() else f"{len(parts) - 1} tabs"
            faults.append(Fault(str(path), n, f"{what}: a line is one `de<TAB>en` pair"))
            continue
        sides = dict(zip(("de", "en"), parts, strict=True))
        bad = [f"the {side} side is blank" for side, s in sides.items() if not s.strip()]
        bad += [f"the {side} side has {len(s)} characters (at most {MAX_CHARS})"
                for side, s in sides.items() if len(s) > MAX_CHARS]  # fmt: skip
        if any(unicodedata.category(c) == "Cc" for s in parts for c in s):
            bad.append("a control character (only text and one tab)")
        faults += [Fault(str(path), n, b) for b in bad]
        if not bad:
            pairs.append((n, parts[0].strip(), parts[1].strip()))
    if not pairs and not faults:
        faults.append(Fault(str(path), 0, f"{path}: no pairs in it"))
    return pairs


def check_pairs(files: list[Path], train: StageOutput, earlier: list[Path] = ()) -> Report:
    """Every fault of every file at once (IncomingError), else what each file (the `earlier`
    ones, already in the incoming folder, first) adds against the ingested train split `train`
    (train.parquet: src, trg) and the files before it; the report's `added`: the new (de, en)
    pairs, in order."""
    table = pq.read_table(train.file("train.parquet"))
    keys = map(_key, table.column("src").to_pylist(), table.column("trg").to_pylist())
    seen, faults, langs = Ledger(dict.fromkeys(keys, "the train split")), [], languages(train)
    for path in seen.files(files, earlier):
        skipped = []
        for _, de, en in read_tsv(path, faults, langs, skipped):
            seen.add(path, _key(de, en), (de, en))
        if skipped:
            seen.notes[path.name].append("1 header line skipped")
    return seen.report(faults)


def languages(train: StageOutput) -> tuple[str, str]:
    """(source, target) language codes of the ingested split (its stage's params)."""
    parts = train.parts or read_manifest(Path(train.path)).get("parts", {})
    params = parts.get("params", {})
    return params.get("src", "de"), params.get("trg", "en")


@task(name="add_pairs", cache_policy=NO_CACHE)
def add_pairs(pipeline: str, rows: StageOutput, files: list[Path]) -> StageOutput:
    """The ingested splits with the incoming files' new pairs appended to train.parquet."""

    def build(out: Path) -> dict:
        report = check_pairs([], rows, files)
        table = pq.read_table(rows.file("train.parquet"))
        src = table.column("src").to_pylist() + [de for de, _ in report.added]
        trg = table.column("trg").to_pylist() + [en for _, en in report.added]
        write_table(pa.table({"src": src, "trg": trg}), out / "train.parquet")
        for split in ("valid", "test"):
            write_table(pq.read_table(rows.file(f"{split}.parquet")), out / f"{split}.parquet")
        return {"train_pairs": len(src), "valid_pairs": rows.stats["valid_pairs"],
                "test_pairs": rows.stats["test_pairs"], "new_pairs": len(report.added),
                "duplicate_pairs": sum(f.duplicates for f in report.files)}  # fmt: skip

    return run_stage(
        pipeline,
        "add_pairs",
        inputs={"rows": rows.fingerprint} | {p.name: sha256_file(p) for p in files},
        libs=("pyarrow",),
        build=build,
    )
