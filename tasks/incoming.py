"""Incoming word2vec rows, checked at the door: what `seqflow ingest` and `seqflow retrain`
both run before any stage, so a bad file is refused with every fault named, and the same data
is never counted twice.

Rules (each fault names the file, the line and the value):
- `id` and `label` are integers, `label` is one of the source's labels, `tweet` is not blank;
- an id appears once in a file;
- a row whose label and text equal a row's already in the source (the rows the run reads:
  `data.limit_rows` reads fewer) or in an earlier incoming file is a duplicate, whatever its
  id: it is dropped and counted (`duplicate_rows`); an id already there with another label or
  text is a conflict and refused;
- a file whose every row is a duplicate adds nothing and is named as such.
Files are read in name order, as the ingest stage reads them. A file saved with `;`, tab or `|`
between its columns is read with the delimiter its header uses, and the report says so.
"""

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tasks.data import DataSourceError, fetch, read_csv, sha256_file
from tasks.engine.catalog import DATASETS

SHOWN = 20  # faults listed in one error (the count says how many in all)
DELIMITER_NAMES = {";": "semicolon", "\t": "tab", "|": "pipe"}


@dataclass
class Fault:
    file: str
    line: int
    problem: str

    def __str__(self) -> str:  # line 0: the whole file (the message names it)
        return f"{self.file}, line {self.line}: {self.problem}" if self.line else self.problem


class IncomingError(DataSourceError):
    """Incoming rows that would fail or mislead the retrain; nothing was copied or trained."""

    def __init__(self, faults: list[Fault]):
        self.faults = faults
        shown = "\n  ".join(map(str, faults[:SHOWN]))
        more = f"\n  ... and {len(faults) - SHOWN} more" if len(faults) > SHOWN else ""
        super().__init__(
            f"{len(faults)} problem(s) in the incoming data; fix them (or move the file out of "
            f"the folder) and run again; nothing was copied or trained:\n  {shown}{more}"
        )


@dataclass
class FileReport:
    name: str
    rows: int  # data rows in the file
    new: int  # rows it adds
    duplicates: int  # rows already in the source or an earlier file
    duplicate_of: list[str]  # where those rows were
    notes: list[str] = field(default_factory=list)  # repairs made reading it, e.g. a header


@dataclass
class Report:
    files: list[FileReport]
    fingerprint: str  # of the set of new rows ("" = none): names and order play no part
    keep: dict[str, list[bool]]  # file name -> which of its rows to ingest
    added: list  # the new rows, in order (seq2seq: the (de, en) pairs add_pairs appends)


class Ledger:
    """Rows checked file after file: where each row's content key was first seen (the source,
    or an incoming file) and what each file adds: which of its rows to keep, where its
    duplicates were."""

    def __init__(self, known: dict):  # content key (word2vec: and id) -> where it already is
        self.where = dict(known)
        self.keep: dict[str, list[bool]] = {}
        self.dup_of: dict[str, set[str]] = {}
        self.added: dict[bytes, object] = {}  # new content key -> its row
        self.notes: dict[str, list[str]] = {}  # file name -> repairs made reading it

    def files(self, files: list[Path], earlier: list[Path] = ()) -> Iterator[Path]:
        """The `earlier` files (already in the incoming folder), then `files`, in name order."""
        for path in [*by_name(earlier), *by_name(files)]:
            self.keep[path.name], self.dup_of[path.name], self.notes[path.name] = [], set(), []
            yield path

    def add(self, path: Path, key: bytes, row) -> bool:
        """Whether a row of `path` is new (kept; its key now first seen there), else it is a
        duplicate: dropped and counted."""
        new = key not in self.where
        self.keep[path.name].append(new)
        if new:
            self.where[key] = f"incoming {path.name}"
            self.added[key] = row
        else:
            self.dup_of[path.name].add(self.where[key])
        return new

    def report(self, faults: list[Fault]) -> Report:
        """Every fault at once (IncomingError), else what each file adds."""
        if faults:
            raise IncomingError(faults)
        files = [FileReport(name, len(flags), sum(flags), flags.count(False),
                            sorted(self.dup_of[name]), self.notes[name])
                 for name, flags in self.keep.items()]  # fmt: skip
        fp = hashlib.sha256(b"".join(sorted(self.added))).hexdigest() if self.added else ""
        return Report(files, fp, self.keep, list(self.added.values()))


def _row_key(label: str, text: str) -> bytes:
    """A row's content: its label and text (not its id)."""
    return hashlib.sha256(f"{label}\x1f{text.strip()}".encode()).digest()


def by_name(paths) -> list[Path]:
    return sorted(map(Path, paths), key=lambda p: p.name)


def check_word2vec(files: list[Path], dataset: str = "tweets_hate_speech", file: str = "train.csv",
                   limit_rows: int | None = None, earlier: list[Path] = ()) -> Report:  # fmt: skip
    """Every fault of every file at once (IncomingError), else what each file adds. Files are
    taken in name order, after the `earlier` ones (files already in the incoming folder)."""
    spec = DATASETS[dataset]
    src = read_csv(fetch(spec, file), spec.columns).columns
    cols = [src[c][: limit_rows or None] for c in ("id", "label", "tweet")]  # the rows run reads
    ids = {i.strip(): _row_key(lb.strip(), t) for i, lb, t in zip(*cols, strict=True)}
    labels = {lb.strip() for lb in src["label"]}
    source = f"the source {file}" + (f" (first {limit_rows} rows)" if limit_rows else "")
    seen = Ledger(dict.fromkeys([*ids, *ids.values()], source))  # ids (str) and row keys (bytes)
    faults = []
    for path in seen.files(files, earlier):
        try:
            table = read_csv(path, spec.columns)
        except DataSourceError as err:
            faults.append(Fault(str(path), 0, str(err)))
            continue
        if table.delimiter != ",":
            seen.notes[path.name].append(f"read as {DELIMITER_NAMES[table.delimiter]}-separated "
                                         "(its header's delimiter)")  # fmt: skip
        in_file: dict[str, int] = {}
        cols = (table.columns[c] for c in ("id", "label", "tweet"))
        for line, i, lb, text in zip(table.lines, *cols, strict=True):
            i, lb = i.strip(), lb.strip()
            bad = [] if _is_int(i) else [f"id {i!r} is not an integer"]
            if not _is_int(lb):
                bad.append(f"label {lb!r} is not an integer")
            elif lb not in labels:
                bad.append(f"label {lb} is not one of the source's labels "
                           f"({', '.join(sorted(labels))})")  # fmt: skip
            if not text.strip():
                bad.append("the tweet is empty")
            if i in in_file:
                bad.append(f"id {i} repeats line {in_file[i]} of this file: ids are unique")
            faults += [Fault(str(path), line, b) for b in bad]
            in_file.setdefault(i, line)
            if bad:
                continue
            key = _row_key(lb, text)
            if key not in seen.where and i in seen.where:  # a new row under a known id
                faults.append(Fault(str(path), line, f"id {i} is already in {seen.where[i]} with "
                                    "another label or text: give the row a new id"))  # fmt: skip
            elif seen.add(path, key, (i, lb, text)):  # a new row: its id is now taken
                seen.where[i] = seen.where[key]
    return seen.report(faults)


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def content_fingerprint(
    incoming: list[Path], dataset: str, file: str, limit_rows: int | None
) -> tuple[str, list[FileReport]]:
    """(fingerprint of what the incoming files add, "" when nothing; their reports). CSVs by
    their new rows (tasks/incoming.py's rules), other files by their distinct contents."""
    if not incoming:
        return "", []
    if all(Path(p).suffix == ".csv" for p in incoming):
        report = check_word2vec(incoming, dataset, file, limit_rows)
    else:
        seen = Ledger({})
        for p in seen.files(incoming):  # a text file is one row: its contents
            seen.add(p, sha256_file(p).encode(), p.name)
        report = seen.report([])
    return report.fingerprint, report.files


def data_fingerprint(dataset: str, file: str, limit_rows: int | None, incoming: list[Path]) -> str:
    """What a model is trained on: the source file's sha256, the row limit and the content
    the incoming files add (not their names: a file dropped twice, or one whose rows are all
    in the source, changes nothing)."""
    added, _ = content_fingerprint(incoming, dataset, file, limit_rows)
    parts = {"source": [dataset, file, DATASETS[dataset].file(file).sha256, limit_rows],
             "incoming": [added] if added else []}  # fmt: skip
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
