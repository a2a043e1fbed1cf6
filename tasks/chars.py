"""Character-level text stages: ingest a Gutenberg book -> character ids -> windows (Parquet).

The held-out split of the non-parity profiles is by whole chapters: windows never cross a
chapter boundary, so no test character sits inside a training window. Incoming texts
(data/incoming/charlm/*.txt, for retraining) only ever add training windows; the vocabulary
and the test windows come from the book alone, so models before and after stay comparable.
"""

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.shards import map_shards
from tasks.engine.stage import StageOutput, run_logger, run_stage, write_table
from tasks.vocab import merge_counts

START = re.compile(r"^\*\*\* START OF .*\*\*\*\s*$", re.M)
END = re.compile(r"^\*\*\* END OF .*\*\*\*\s*$", re.M)
CHAPTER = re.compile(r"^[ \t]*(?=Cap[íi]tulo\b)", re.M)
KEEP = "A-Za-záéíóúÁÉÍÓÚñÑüÜ"


class TextFormatError(ValueError):
    """A text the pipeline cannot use; the message names the file and the fix."""


def strip_gutenberg(text: str, name: str = "text") -> str:
    """The book between the `*** START OF` and `*** END OF` marker lines."""
    start, end = START.search(text), END.search(text)
    if not start or not end or end.start() < start.end():
        raise TextFormatError(
            f"{name}: no '*** START OF ... ***' / '*** END OF ... ***' marker lines; a Project "
            "Gutenberg plain-text file has both. Check that the file is the eBook's .txt"
        )
    return text[start.end() : end.start()]


def normalize(text: str) -> str:
    """Runs of characters outside the Spanish letters -> one space; lowercase (notebook)."""
    return re.sub(f"[^{KEEP}]+", " ", text).lower()


def by_count(counts: Counter) -> list[str]:
    """Keys by descending count, ties in the counter's (first-seen) order: a stable sort."""
    return [c for c, _ in counts.most_common()]


def chapters(body: str) -> list[str]:
    """The body cut at chapter headings (front matter before the first one is block 0)."""
    cuts = [0, *(m.end() for m in CHAPTER.finditer(body)), len(body)]
    return [body[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def windows(ids: np.ndarray, length: int, stride: int = 1) -> np.ndarray:
    """All windows of `length` ids at `stride`, the notebook's range(0, n - length): [k, length]."""
    n = len(ids) - length  # the notebook stops one short of the last full window (none: n <= 0)
    return ids[np.arange(0, n, stride)[:, None] + np.arange(length)]


MIN_LETTERS = 0.5  # an incoming text below this share of Spanish letters is refused


def foreign_characters(text: str) -> tuple[int, int, list[str]]:
    """(letters kept, other non-space characters, the commonest of those) of a text."""
    other = Counter(re.findall(f"[^{KEEP}\\s\\d\\W_]", text))  # letters outside the alphabet
    kept = len(re.findall(f"[{KEEP}]", text))
    return kept, sum(other.values()), [c for c, _ in other.most_common(5)]


def check_incoming(path: Path) -> str:
    """An incoming text: UTF-8, Gutenberg header/footer dropped when it has the markers. A text
    without letters, or mostly in another alphabet, is refused: its letters would all become
    spaces (the vocabulary is the book's). An archive or other binary data renamed .txt is
    refused as such (tasks/filetype.py). Returns the text."""
    from tasks.filetype import problem

    raw = path.read_bytes()
    if why := problem(path, raw[:4096]):
        raise TextFormatError(f"{why} (the file was left where it is)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TextFormatError(
            f"{path}: not UTF-8 (byte {e.start}); save it as UTF-8 text and run again "
            "(the file was left where it is)"
        ) from None
    text = strip_gutenberg(text, str(path)) if START.search(text) else text
    if not normalize(text).strip():
        raise TextFormatError(
            f"{path}: no letter ({KEEP}) in it, so nothing to train on; remove the file or "
            "replace it with Spanish text (the file was left where it is)"
        )
    kept, other, common = foreign_characters(text)
    if kept < MIN_LETTERS * (kept + other):
        line = next((n for n, ln in enumerate(text.splitlines(), 1)
                     if foreign_characters(ln)[1] > foreign_characters(ln)[0]), 1)  # fmt: skip
        raise TextFormatError(
            f"{path}, line {line}: {other:,} of its {kept + other:,} letters are outside the "
            f"book's alphabet ({KEEP}; e.g. {' '.join(common)}), so they would all become "
            "spaces: charlm learns Spanish text; remove the file or replace it (the file was "
            "left where it is)"
        )
    return text


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_book(pipeline: str, dataset: str, file: str, incoming: list[Path] = ()) -> StageOutput:
    """Fetch the book, drop the Gutenberg header/footer -> body.txt (+ incoming.json: the
    incoming texts, in name order)."""
    from tasks.data import fetch, sha256_file
    from tasks.engine.catalog import DATASETS

    spec = DATASETS[dataset]
    path = fetch(spec, file)
    incoming = [Path(p) for p in incoming]
    texts = [check_incoming(p) for p in incoming]  # fails before any stage output is written

    def build(out: Path) -> dict:
        text = path.read_bytes().decode("utf-8-sig")
        body = strip_gutenberg(text, str(path))
        (out / "body.txt").write_text(body, encoding="utf-8")
        licence = text[END.search(text).start() :]
        (out / "licence.txt").write_text(licence, encoding="utf-8")
        (out / "incoming.json").write_text(json.dumps(texts, ensure_ascii=False))
        return {"chars": len(body), "licence_chars": len(licence),
                "incoming_files": len(texts), "incoming_chars": sum(map(len, texts))}  # fmt: skip

    inputs = {"source": spec.file(file).sha256,
              "incoming": [[p.name, sha256_file(p)] for p in incoming]}  # fmt: skip
    return run_stage(pipeline, "ingest", inputs=inputs,
                     params={"dataset": dataset, "file": file}, build=build)  # fmt: skip


def book_text(book: StageOutput, notebook_text: bool) -> str:
    """The text to model. notebook_text: as the notebook reads it (its f.seek(41508)): from the
    first chapter heading to the end of the file, Gutenberg's English licence included; that
    licence is where its vocabulary's 'w' and 'k' mostly come from. Otherwise the book only."""
    body = book.file("body.txt").read_text(encoding="utf-8")
    if not notebook_text:
        return body
    start = first.end() if (first := CHAPTER.search(body)) else 0
    return body[start:] + book.file("licence.txt").read_text(encoding="utf-8")


CHAPTERS_PER_SHARD = 32


def encode_text(text: str, index: dict) -> np.ndarray:
    """int8 ids of the characters of `text` that the vocabulary `index` holds (others dropped)."""
    return np.fromiter((index[c] for c in text if c in index), np.int8)


def chapter_shard(shard: int, book: StageOutput, notebook_text: bool, index: dict | None = None):
    """A shard of the normalised chapters: its character counts in first-seen order, or, given
    the vocabulary `index`, one id array per chapter."""
    chaps = chapters(book_text(book, notebook_text))
    texts = [normalize(c) for c in chaps[shard * CHAPTERS_PER_SHARD :][:CHAPTERS_PER_SHARD]]
    return Counter("".join(texts)) if index is None else [encode_text(t, index) for t in texts]


@task(name="encode", cache_policy=NO_CACHE)
def encode_chars(pipeline: str, book: StageOutput, notebook_text: bool) -> StageOutput:
    """Normalise and map to ids -> vocab.json, chapters.parquet and incoming.parquet (`ids`
    list<int8> per chapter / incoming text). The vocabulary is the book's; characters of
    incoming texts outside it are dropped and counted."""

    def build(out: Path) -> dict:
        n = len(chapters(book_text(book, notebook_text)))
        shards = max(1, -(-n // CHAPTERS_PER_SHARD))
        args = {"book": book, "notebook_text": notebook_text}
        # two passes over chapter shards (Dask workers under --runner dask): counts, merged in
        # shard order (the whole text's first-seen order), then ids with the vocabulary
        counts = merge_counts(map_shards(chapter_shard, shards, **args))
        vocab = by_count(counts)
        index = {c: i for i, c in enumerate(vocab)}
        ids = [a for chunk in map_shards(chapter_shard, shards, index=index, **args)
               for a in chunk]  # fmt: skip
        texts = [normalize(t) for t in json.loads(book.file("incoming.json").read_text("utf-8"))]
        extra = [encode_text(t, index) for t in texts]
        dropped = sum(map(len, texts)) - sum(map(len, extra))
        if dropped:
            run_logger().warning("incoming texts: %d character(s) outside the book's vocabulary "
                                 "dropped", dropped)  # fmt: skip
        (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        for name, arrays in (("chapters", ids), ("incoming", extra)):
            write_table(pa.table({"ids": pa.array(arrays, pa.list_(pa.int8()))}),
                        out / f"{name}.parquet")  # fmt: skip
        return {"vocab_size": len(vocab), "chars": int(sum(map(len, ids))), "chapters": len(ids),
                "incoming_chars": sum(map(len, extra)), "incoming_dropped": dropped}  # fmt: skip

    return run_stage(pipeline, "encode", inputs={"body": book.fingerprint},
                     params={"notebook_text": notebook_text},
                     libs=("pyarrow",), build=build)  # fmt: skip


def read_chars(encoded: StageOutput, part: str = "chapters") -> tuple[list[str], list[np.ndarray]]:
    """(vocab, ids per chapter) of the book, or per incoming text with part="incoming"."""
    vocab = json.loads(encoded.file("vocab.json").read_text(encoding="utf-8"))
    col = pq.read_table(encoded.file(f"{part}.parquet")).column("ids").to_pylist()
    return vocab, [np.asarray(c, dtype=np.int8) for c in col]


def split_windows(
    chaps: list[np.ndarray], cfg, extra: list[np.ndarray] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) windows of cfg.length + 1 ids.

    parity: the notebook's windows over the whole text at stride 1, the first n_train for
    training and the next n_test for test (they overlap in text, as the notebook's do).
    chapters: every cfg.test_every-th chapter is held out; windows stay inside one chapter.
    extra (incoming texts) add training windows only (stride 1 in parity, else cfg.stride).
    """
    width = cfg.length + 1
    stride = 1 if cfg.split == "parity" else cfg.stride
    more = [windows(t, width, stride) for t in extra]
    if cfg.split == "parity":
        every = windows(np.concatenate(chaps), width, 1)
        if len(every) < cfg.n_train + cfg.n_test:
            raise TextFormatError(
                f"the text gives {len(every)} windows of {width} characters, fewer than "
                f"windows.n_train + n_test = {cfg.n_train + cfg.n_test}: lower them or "
                "windows.length"
            )
        train, test = every[: cfg.n_train], every[cfg.n_train : cfg.n_train + cfg.n_test]
        return np.concatenate([train, *more]), test
    train = [windows(c, width, stride) for i, c in enumerate(chaps, 1) if i % cfg.test_every]
    test = [windows(c, width, width) for i, c in enumerate(chaps, 1) if not i % cfg.test_every]
    none = np.zeros((0, width), np.int8)
    train, test = np.concatenate([none, *train, *more]), np.concatenate([none, *test])
    if not len(train) or not len(test):
        raise TextFormatError(
            f"no {'training' if not len(train) else 'test'} window of {width} characters: "
            f"the chapters are shorter than windows.length + 1 or fewer than "
            f"windows.test_every = {cfg.test_every}; lower windows.length or test_every"
        )
    return train, test


@task(name="windows", cache_policy=NO_CACHE)
def window_chars(pipeline: str, encoded: StageOutput, cfg) -> StageOutput:
    """train.parquet / test.parquet: one row per window (`ids`, fixed-size list<int8>)."""

    def build(out: Path) -> dict:
        _, chaps = read_chars(encoded)
        train, test = split_windows(chaps, cfg, read_chars(encoded, "incoming")[1])
        for name, arr in (("train", train), ("test", test)):
            flat = pa.array(arr.reshape(-1), pa.int8())
            table = pa.table({"ids": pa.FixedSizeListArray.from_arrays(flat, arr.shape[1])})
            write_table(table, out / f"{name}.parquet")
        return {"train_windows": len(train), "test_windows": len(test)}

    return run_stage(pipeline, "windows", inputs={"chars": encoded.fingerprint},
                     params=cfg.model_dump(), libs=("pyarrow",),
                     build=build)  # fmt: skip
