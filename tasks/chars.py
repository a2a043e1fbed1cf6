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


def write_windows(out: Path, train: np.ndarray, test: np.ndarray) -> dict:
    """train.parquet / test.parquet, one row per window (`ids`, fixed-size list<int8>)."""
    for name, arr in (("train", train), ("test", test)):
        flat = pa.array(arr.reshape(-1), pa.int8())
        table = pa.table({"ids": pa.FixedSizeListArray.from_arrays(flat, arr.shape[1])})
        write_table(table, out / f"{name}.parquet")
    return {"train_windows": len(train), "test_windows": len(test)}


@task(name="windows", cache_policy=NO_CACHE)
def window_chars(pipeline: str, encoded: StageOutput, cfg) -> StageOutput:
    """train.parquet / test.parquet: one row per window (`ids`, fixed-size list<int8>)."""

    def build(out: Path) -> dict:
        _, chaps = read_chars(encoded)
        train, test = split_windows(chaps, cfg, read_chars(encoded, "incoming")[1])
        return write_windows(out, train, test)

    return run_stage(pipeline, "windows", inputs={"chars": encoded.fingerprint},
                     params=cfg.model_dump(), libs=("pyarrow",),
                     build=build)  # fmt: skip


# --- your own text (data.source other than 'course') ------------------------------------------
# The alphabet is the training text's, by count; characters rarer than data.min_char_count
# become one replacement symbol (counted). The held-out text is whole documents (the source's
# own validation/test splits, or carved ones) or, in one text, every test_every-th section.

UNKNOWN = "\ufffd"  # the one symbol rare characters become (Unicode's replacement character)
MAX_ALPHABET = 128  # ids are int8: at most 127 characters + the replacement symbol
HEADINGS = re.compile(
    r"^[ \t]*(?:BOOK|Book|CHAPTER|Chapter|PART|Part|CANTO|Canto)[ \t]+(?:[IVXLCDM]+|\d+)\b", re.M
)
PROMPTS, PROMPT_WORDS = 3, 3  # sampling prompts drawn from the held-out text: how many, words


def cut_gutenberg(text: str) -> tuple[str, bool]:
    """The text between Gutenberg's `*** START OF` / `*** END OF` lines when it has both;
    else the text as it is. (text, whether markers were cut)."""
    start, end = START.search(text), END.search(text)
    if start and end and end.start() > start.end():
        return text[start.end() : end.start()], True
    return text, False


def prepare(text: str, lowercase: bool) -> str:
    """Own text as the model reads it: every run of whitespace one space (line breaks in a
    plain-text book are layout), lowercased when asked. No alphabet is assumed."""
    text = re.sub(r"\s+", " ", text)
    return text.lower() if lowercase else text


def derive_alphabet(counts: Counter, min_count: int, symbol: str = UNKNOWN,
                    max_size: int = MAX_ALPHABET) -> tuple[list[str], dict[str, int]]:  # fmt: skip
    """(alphabet by count, {rare character: count}). Characters seen fewer than `min_count`
    times (and the rarest beyond max_size - 1) become `symbol`, which is in the alphabet with
    their summed count (placed by that count; last when none is rare)."""
    common = [(c, n) for c, n in counts.most_common() if c != symbol]
    kept = [(c, n) for c, n in common if n >= min_count][: max_size - 1]
    keep = {c for c, _ in kept}
    rare = {c: n for c, n in common if c not in keep}
    merged = Counter(dict(kept))
    merged[symbol] = sum(rare.values()) + counts.get(symbol, 0)
    return by_count(merged), rare


def replace_rare(text: str, alphabet: set[str], symbol: str = UNKNOWN) -> tuple[str, int]:
    """(text with every character outside `alphabet` as `symbol`, how many were replaced)."""
    out = [c if c in alphabet else symbol for c in text]
    return "".join(out), sum(1 for c in text if c not in alphabet)


def equal_blocks(text: str, n: int) -> list[str]:
    """`text` in n blocks of about equal length, each cut at the next blank line (else the
    next whitespace) after its share."""
    cuts = [0]
    for k in range(1, n):
        at = max(cuts[-1], len(text) * k // n)
        m = re.compile(r"\n[ \t]*\n|\s").search(text, at)
        cuts.append(m.end() if m else len(text))
    cuts.append(len(text))
    return [text[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True) if text[a:b].strip()]


def sections(text: str, pattern: str | None, test_every: int) -> tuple[list[str], dict]:
    """One text cut into sections at the lines `pattern` matches (a regex, multiline: `^` is a
    line start); the text before the first match is section 0. No pattern: chapter-like
    headings (BOOK I, Chapter 2, PART III...) when there are test_every of them, else
    2 * test_every blocks of equal length. Returns (sections, how they were cut)."""
    if pattern:
        try:
            regex = re.compile(pattern, re.M)
        except re.error as err:
            raise TextFormatError(f"data.section_pattern {pattern!r} is not a regex ({err}); "
                                  "fix it, e.g. '^BOOK [IVX]+'") from None  # fmt: skip
    else:
        regex = HEADINGS
    starts = [m.start() for m in regex.finditer(text)]
    cuts = sorted({0, *starts, len(text)})
    found = [text[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True) if text[a:b].strip()]
    if len(found) >= test_every:
        return found, {"by": "pattern" if pattern else "headings", "pattern": regex.pattern,
                       "headings": len(starts), "sections": len(found)}  # fmt: skip
    if pattern:
        raise TextFormatError(
            f"data.section_pattern {pattern!r} cuts the text into {len(found)} section(s), fewer "
            f"than windows.test_every = {test_every}, so none would be held out: give a pattern "
            "that matches each section's heading line, lower windows.test_every, or leave "
            "data.section_pattern unset (equal blocks)"
        )
    blocks = equal_blocks(text, 2 * test_every)
    return blocks, {"by": "blocks", "sections": len(blocks)}


def prompt_of(text: str, regex: re.Pattern | None = None, words: int = PROMPT_WORDS) -> str:
    """The first `words` words of a section after its heading (the match at its start)."""
    if regex is not None and (m := regex.match(text)):
        text = text[m.end() :]
    start = re.search(r"[^\W\d_]", text)  # the first letter: past the heading's punctuation
    got = text[start.start() :].split()[:words] if start else []
    return " ".join(got) + " " if got else ""


def limited(texts: list[str], limit: int | None) -> list[str]:
    """The texts, in order, cut to `limit` characters in all (None: all of them)."""
    if limit is None:
        return list(texts)
    out, left = [], limit
    for t in texts:
        if left <= 0:
            break
        out.append(t[:left])
        left -= len(out[-1])
    return out


def read_incoming(path: Path) -> str:
    """An incoming text for your own data: UTF-8, not an archive, Gutenberg markers cut."""
    from tasks.filetype import problem

    raw = path.read_bytes()
    if why := problem(path, raw[:4096]):
        raise TextFormatError(f"{why} (the file was left where it is)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TextFormatError(f"{path}: not UTF-8 (byte {e.start}); save it as UTF-8 text and run "
                              "again (the file was left where it is)") from None  # fmt: skip
    return cut_gutenberg(text)[0]


def check_incoming_own(path: Path, alphabet: list[str], lowercase: bool) -> str:
    """An incoming text for a model of your own text: read_incoming's checks, then at least
    MIN_LETTERS of its non-space characters must be in the derived `alphabet` (the others
    would all become the replacement symbol). Returns the text."""
    text = read_incoming(path)
    seen = [c for c in prepare(text, lowercase) if not c.isspace()]
    if not seen:
        raise TextFormatError(f"{path}: no character in it, so nothing to train on; remove the "
                              "file (the file was left where it is)")  # fmt: skip
    known = set(alphabet) - {UNKNOWN}
    outside = Counter(c for c in seen if c not in known)
    if sum(outside.values()) > (1 - MIN_LETTERS) * len(seen):
        common = " ".join(c for c, _ in outside.most_common(5))
        raise TextFormatError(
            f"{path}: {sum(outside.values()):,} of its {len(seen):,} characters are outside the "
            f"alphabet derived from the training text (e.g. {common}), so they would all become "
            f"the replacement symbol; remove the file or replace it (the file was left where "
            "it is)"
        )
    return text


def _texts(ds, column: str) -> list[str]:
    from tasks.sources import rows_table

    return [t or "" for table in rows_table(ds, {"text": column})
            for t in table.column("text").to_pylist()]  # fmt: skip


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_text(pipeline: str, data, test_every: int, wanted: dict,
                incoming: list[Path] = ()) -> StageOutput:  # fmt: skip
    """Your own text -> sections.parquet (`text`, `held_out`) + prompts.json + incoming.json.

    Held out by whole documents when the source has its own validation/test split, or when a
    seeded carve of its documents leaves both sides some; else the text (its documents joined)
    is cut into sections (data.section_pattern; see `sections`) and every test_every-th one
    is held out. Gutenberg markers are cut from each document that has them. data.limit_chars
    cuts the text (by documents: the training and the held-out text each) to that length."""
    from tasks.engine.stage import sha256_file
    from tasks.sources import fingerprint, identity, load, locate, pick_splits

    source = locate(data.source, data.config, data.revision)
    mapping = {k: c for k, (c, _) in wanted.items()}
    column = mapping["text_column"]
    ident = identity(source, mapping)
    incoming = [Path(p) for p in incoming]
    extra = [read_incoming(p) for p in incoming]  # fails before any stage output is written

    def build(out: Path) -> dict:
        found = load(source, streaming=data.streaming, by_document=True)
        names = {"train": data.train_split, "validation": data.validation_split,
                 "test": data.test_split}  # fmt: skip
        fractions = {"validation": data.validation_fraction, "test": data.test_fraction}
        splits, carved = pick_splits(found, names, fractions, data.split_seed, source)
        docs = {role: [cut_gutenberg(t) for t in _texts(ds, column)] for role, ds in splits.items()}
        cut = sum(c for d in docs.values() for _, c in d)
        docs = {role: [t for t, _ in d if t.strip()] for role, d in docs.items()}
        held = docs["validation"] + docs["test"]
        stats: dict = {"source": source.name, "kind": source.kind, "gutenberg_cut": cut}
        if docs["train"] and held:  # whole documents
            train, held = limited(docs["train"], data.limit_chars), limited(held, data.limit_chars)
            texts, flags = train + held, [False] * len(train) + [True] * len(held)
            stats["split"] = {
                "by": "documents",
                "carved": carved,
                "train_documents": len(train),
                "held_out_documents": len(held),
            }
            heading = None
        else:  # one text (or too few documents to carve): sections of it
            whole = [t for role in ("train", "validation", "test") for t in docs[role]]
            text = "\n\n".join(limited(["\n\n".join(whole)], data.limit_chars))
            if not text.strip():
                raise TextFormatError(f"data.source {data.source!r}: no text in column "
                                      f"{column!r}; give a source with text")  # fmt: skip
            texts, how = sections(text, data.section_pattern, test_every)
            flags = [not i % test_every for i in range(1, len(texts) + 1)]
            stats["split"] = how | {"held_out": [i for i, f in enumerate(flags, 1) if f],
                                    "test_every": test_every}  # fmt: skip
            heading = re.compile(how["pattern"], re.M) if "pattern" in how else None
        prompts = [p for t, f in zip(texts, flags, strict=True) if f
                   if (p := prompt_of(t, heading))][:PROMPTS]  # fmt: skip
        table = pa.table({"text": texts, "held_out": flags})
        write_table(table, out / "sections.parquet")
        (out / "prompts.json").write_text(json.dumps(prompts, ensure_ascii=False))
        (out / "incoming.json").write_text(json.dumps(extra, ensure_ascii=False))
        stats |= {"sections": len(texts), "held_out_sections": sum(flags),
                  "chars": sum(map(len, texts)),
                  "held_out_chars": sum(len(t) for t, f in zip(texts, flags, strict=True) if f),
                  "incoming_files": len(extra), "incoming_chars": sum(map(len, extra))}  # fmt: skip
        return stats

    inputs = {"source": fingerprint(ident),
              "incoming": [[p.name, sha256_file(p)] for p in incoming]}  # fmt: skip
    params = {"identity": ident, "test_every": test_every, "section_pattern": data.section_pattern,
              "limit_chars": data.limit_chars, "splits": [data.train_split, data.validation_split,
              data.test_split], "fractions": [data.validation_fraction, data.test_fraction],
              "seed": data.split_seed}  # fmt: skip
    return run_stage(pipeline, "ingest", inputs=inputs, params=params,
                     libs=("datasets", "pyarrow"), build=build)  # fmt: skip


def read_prompts(book: StageOutput) -> list[str]:
    return json.loads(book.file("prompts.json").read_text(encoding="utf-8"))


@task(name="encode", cache_policy=NO_CACHE)
def encode_own(pipeline: str, book: StageOutput, lowercase: bool, min_count: int) -> StageOutput:
    """Own text -> vocab.json (the training sections' alphabet by count, rare characters as one
    replacement symbol), chapters.parquet (`ids` per section, `held_out`) and incoming.parquet.
    Held-out and incoming characters outside the alphabet become the symbol too; all counted."""

    def build(out: Path) -> dict:
        table = pq.read_table(book.file("sections.parquet"))
        texts = [prepare(t, lowercase) for t in table.column("text").to_pylist()]
        held = table.column("held_out").to_pylist()
        counts = Counter("".join(t for t, h in zip(texts, held, strict=True) if not h))
        vocab, rare = derive_alphabet(counts, min_count)
        index = {c: i for i, c in enumerate(vocab)}
        known = set(vocab) - {UNKNOWN}
        done = [replace_rare(t, known) for t in texts]
        extra = [replace_rare(prepare(t, lowercase), known)
                 for t in json.loads(book.file("incoming.json").read_text("utf-8"))]  # fmt: skip
        ids = [encode_text(t, index) for t, _ in done]
        (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
        write_table(pa.table({"ids": pa.array(ids, pa.list_(pa.int8())), "held_out": held}),
                    out / "chapters.parquet")  # fmt: skip
        write_table(pa.table({"ids": pa.array([encode_text(t, index) for t, _ in extra],
                                              pa.list_(pa.int8()))}),
                    out / "incoming.parquet")  # fmt: skip
        replaced = sum(n for (_, n), h in zip(done, held, strict=True) if not h)
        unseen = sum(n for (_, n), h in zip(done, held, strict=True) if h)
        if replaced or unseen:
            run_logger().info("alphabet of %d characters: %d rare character(s) in training and "
                              "%d in the held-out text became %r", len(vocab), replaced, unseen,
                              UNKNOWN)  # fmt: skip
        return {"vocab_size": len(vocab), "chars": int(sum(map(len, ids))), "chapters": len(ids),
                "replaced_chars": replaced, "held_out_replaced_chars": unseen,
                "rare_characters": "".join(rare), "replacement_symbol": UNKNOWN,
                "incoming_chars": sum(len(t) for t, _ in extra),
                "incoming_replaced_chars": sum(n for _, n in extra)}  # fmt: skip

    return run_stage(pipeline, "encode", inputs={"body": book.fingerprint},
                     params={"lowercase": lowercase, "min_char_count": min_count},
                     libs=("pyarrow",), build=build)  # fmt: skip


def spread(arr: np.ndarray, n: int) -> np.ndarray:
    """At most n rows of `arr`, evenly spaced from first to last (all when it has n or fewer)."""
    if len(arr) <= n:
        return arr
    return arr[np.linspace(0, len(arr) - 1, n).round().astype(np.int64)]


def split_sections(chaps: list[np.ndarray], held: list[bool], cfg,
                   extra: list[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(train, test) windows of cfg.length + 1 ids: training windows at cfg.stride from the
    training sections, test windows side by side from the held-out ones, none crossing a
    section. split=parity (quick): n_train and n_test of them, evenly spaced. extra (incoming
    texts): more training windows."""
    width = cfg.length + 1
    none = np.zeros((0, width), np.int8)
    train = np.concatenate(
        [none, *(windows(c, width, cfg.stride) for c, h in zip(chaps, held, strict=True) if not h)]
    )
    test = np.concatenate([none, *(windows(c, width, width)
                                   for c, h in zip(chaps, held, strict=True) if h)])  # fmt: skip
    if cfg.split == "parity":
        train, test = spread(train, cfg.n_train), spread(test, cfg.n_test)
    more = [windows(t, width, cfg.stride) for t in extra]
    train = np.concatenate([train, *more])
    if not len(train) or not len(test):
        raise TextFormatError(
            f"no {'training' if not len(train) else 'held-out'} window of {width} characters: "
            "the text there is shorter than windows.length + 1; lower windows.length, or hold "
            "out more (windows.test_every, data.section_pattern, the split fractions)"
        )
    return train, test


@task(name="windows", cache_policy=NO_CACHE)
def window_sections(pipeline: str, encoded: StageOutput, cfg) -> StageOutput:
    """Own text: train.parquet / test.parquet windows from the training / held-out sections."""

    def build(out: Path) -> dict:
        table = pq.read_table(encoded.file("chapters.parquet"))
        _, chaps = read_chars(encoded)
        held = table.column("held_out").to_pylist()
        train, test = split_sections(chaps, held, cfg, read_chars(encoded, "incoming")[1])
        return write_windows(out, train, test)

    return run_stage(pipeline, "windows", inputs={"chars": encoded.fingerprint},
                     params=cfg.model_dump(), libs=("pyarrow",), build=build)  # fmt: skip
