"""Parallel-text stages for translation: ingest archives -> tokenize -> vocab -> encode.

Each split is one Parquet file per stage: train, valid, test.
"""

import functools
import itertools
import json
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.shards import ROWS_PER_SHARD, map_shards, merge_parts, part_path, scratch
from tasks.engine.stage import StageOutput, run_stage, write_table

SPLITS = {  # split -> (archive, file stem inside it)
    "train": ("training.tar.gz", "train"),
    "valid": ("validation.tar.gz", "val"),
    "test": ("mmt16_task1_test.tar.gz", "test"),
}
SPECIALS = ["<unk>", "<pad>", "<sos>", "<eos>"]  # ids 0-3, as torchtext's Field gives
UNK, PAD, SOS, EOS = range(4)


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_parallel(
    pipeline: str, dataset: str, src_lang: str, trg_lang: str, limit_train: int | None = None
) -> StageOutput:
    """The three archives -> {split}.parquet (src, trg strings), lines checked to align."""
    from tasks.archive import find_member, read_parallel, safe_extract
    from tasks.data import fetch
    from tasks.engine.catalog import DATASETS

    spec = DATASETS[dataset]
    archives = {split: fetch(spec, name) for split, (name, _) in SPLITS.items()}

    def build(out: Path) -> dict:
        stats = {}
        with tempfile.TemporaryDirectory() as tmp:
            for split, (_, stem) in SPLITS.items():
                names = safe_extract(archives[split], Path(tmp) / split)
                src = Path(tmp) / split / find_member(names, f"{stem}.{src_lang}")
                trg = Path(tmp) / split / find_member(names, f"{stem}.{trg_lang}")
                pairs = read_parallel(src, trg)[: limit_train if split == "train" else None]
                table = pa.table({"src": [p[0] for p in pairs], "trg": [p[1] for p in pairs]})
                write_table(table, out / f"{split}.parquet")
                stats[f"{split}_pairs"] = len(pairs)
        return stats

    return run_stage(
        pipeline,
        "ingest",
        inputs={name: spec.file(name).sha256 for name, _ in SPLITS.values()},
        params={"dataset": dataset, "src": src_lang, "trg": trg_lang, "limit_train": limit_train},
        libs=("pyarrow",),
        build=build,
    )


ROLES = {"train": "train", "valid": "validation", "test": "test"}  # split -> tasks/sources role


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_own(pipeline: str, data, wanted: dict, limit_train: int | None = None) -> StageOutput:
    """Your own parallel text (tasks/sources.py: a dataset folder, Hub id or files, its splits
    found or carved) -> {split}.parquet (src, trg strings), the layout ingest_parallel writes.
    wanted: {"src_lang"/"src_column": (column, kinds), "trg_...": ...}, source side first. A pair
    with a missing side is dropped and counted."""
    import pyarrow.compute as pc

    from tasks.engine.shards import write_shards
    from tasks.sources import SourceError, fingerprint, keyed, open_source, rows_table

    source, ident, found, carved = open_source(data, wanted)
    src_col, trg_col = (column for column, _ in wanted.values())

    def build(out: Path) -> dict:
        stats: dict = {"source": source.name, "carved": carved}
        for split, role in ROLES.items():
            dropped = 0

            def kept(tables):
                nonlocal dropped
                for t in tables:
                    ok = pc.and_(pc.is_valid(t["src"]), pc.is_valid(t["trg"]))
                    dropped += t.num_rows - pc.sum(ok).as_py() if t.num_rows else 0
                    yield t.filter(ok)

            limit = limit_train if split == "train" else None
            rows = rows_table(found[role], {"src": src_col, "trg": trg_col}, limit)
            n = write_shards(kept(rows), out / f"{split}.parquet")
            if n == 0:
                raise SourceError(
                    f"data.source {source.given!r}: split {role!r} has no pair; give a source "
                    "with rows there, or raise data.validation_fraction / test_fraction"
                )
            stats[f"{split}_pairs"] = n
            stats[f"{split}_dropped_pairs"] = dropped
        return stats

    return run_stage(
        pipeline,
        "ingest",
        inputs={"source": fingerprint(ident)},
        params={  # a folder's path is in the stats: the same files elsewhere, the same key
            "identity": keyed(ident),
            "src": data.src_lang,  # tasks/pairs.languages reads the pair from here
            "trg": data.trg_lang,
            "limit_train": limit_train,
            "splits": [data.train_split, data.validation_split, data.test_split],
            "fractions": [data.validation_fraction, data.test_fraction],
            "seed": data.split_seed,
        },  # fmt: skip
        libs=("datasets", "pyarrow"),
        build=build,
    )


@functools.cache  # per process: a worker loads each tokenizer once
def load_tokenizer(name: str):
    """spaCy's rule-based tokenizer: a language code gives spacy.blank(code), which tokenizes
    as the small models do; a full model name (de_core_news_sm) loads that model."""
    import spacy

    if len(name) <= 3:
        return spacy.blank(name).tokenizer
    try:
        return spacy.load(name, exclude=["parser", "tagger", "ner", "lemmatizer"]).tokenizer
    except OSError as err:
        raise ValueError(
            f"spaCy model {name!r} is not installed: `python -m spacy download {name}`, or set "
            f"the language code ({name[:2]!r}) for the same rule-based tokenizer"
        ) from err


def tokenize_texts(texts: list[str], tokenizer, lowercase: bool, reverse: bool) -> list[list[str]]:
    step = -1 if reverse else 1
    docs = tokenizer.pipe(texts, batch_size=2000)
    return [[t.text.lower() if lowercase else t.text for t in doc][::step] for doc in docs]


def tokenize_shard(shard: int, src: str, parts: str, cfg: dict, subword: str | None = None) -> int:
    """Rows shard*ROWS_PER_SHARD.. of a split -> part file (src_tokens, trg_tokens); returns
    the source token count. cfg: the tokenize section; subword: the subword stage's model
    file, whose pieces are the tokens when given (else spaCy's words). Runs in this process
    or on a Dask worker (tasks/engine/shards.py)."""
    table = pq.read_table(src).slice(shard * ROWS_PER_SHARD, ROWS_PER_SHARD)
    texts = table.column("src").to_pylist(), table.column("trg").to_pylist()
    if subword:
        from tasks.subword import load

        src_tok, trg_tok = (load(subword).encode(t, cfg["lowercase"]) for t in texts)
        if cfg["reverse_src"]:
            src_tok = [doc[::-1] for doc in src_tok]
    else:
        src_tok = tokenize_texts(texts[0], load_tokenizer(cfg["src_model"]), cfg["lowercase"],
                                 cfg["reverse_src"])  # fmt: skip
        trg_tok = tokenize_texts(texts[1], load_tokenizer(cfg["trg_model"]), cfg["lowercase"],
                                 False)  # fmt: skip
    result = pa.table({"src_tokens": pa.array(src_tok, pa.list_(pa.string())),
                       "trg_tokens": pa.array(trg_tok, pa.list_(pa.string()))})  # fmt: skip
    pq.write_table(result, part_path(parts, shard))
    return sum(map(len, src_tok))


@task(name="tokenize", cache_policy=NO_CACHE)
def tokenize_parallel(pipeline: str, rows: StageOutput, cfg,
                      subword: StageOutput | None = None) -> StageOutput:  # fmt: skip
    """{split}.parquet -> {split}.parquet (src_tokens, trg_tokens), in shards of
    ROWS_PER_SHARD rows (on Dask workers under `--runner dask`), merged in order. With a
    subword stage (tasks/subword.py) the tokens are its pieces."""
    from tasks.subword import MODEL

    model = str(subword.file(MODEL)) if subword else None

    def build(out: Path) -> dict:
        stats = {}
        for split in SPLITS:
            src = rows.file(f"{split}.parquet")
            shards = max(1, -(-pq.ParquetFile(src).metadata.num_rows // ROWS_PER_SHARD))
            parts = scratch(out) / split
            parts.mkdir()
            counts = map_shards(tokenize_shard, shards, src=str(src), parts=str(parts),
                                cfg=cfg.model_dump(), subword=model)  # fmt: skip
            stats[f"{split}_src_tokens"] = sum(counts)
            merge_parts(parts, shards, out / f"{split}.parquet")
        shutil.rmtree(scratch(out), ignore_errors=True)
        return stats

    inputs = {"rows": rows.fingerprint} | ({"subword": subword.fingerprint} if subword else {})
    return run_stage(
        pipeline,
        "tokenize",
        inputs=inputs,
        params=cfg.model_dump(),
        libs=("spacy", "pyarrow") + (("sentencepiece",) if subword else ()),
        build=build,
    )


def build_vocab_list(docs: list[list[str]], min_freq: int) -> list[str]:
    """Specials, then tokens seen at least min_freq times by descending count; ties in
    alphabetical order (torchtext's Vocab sorts by token before sorting by count)."""
    counts = Counter(t for doc in docs for t in doc)
    kept = sorted((t for t, n in counts.items() if n >= min_freq and t not in SPECIALS),
                  key=lambda t: (-counts[t], t))  # fmt: skip
    return SPECIALS + kept


@task(name="vocab", cache_policy=NO_CACHE)
def build_vocabs(pipeline: str, tokens: StageOutput, min_freq: int,
                 subword: StageOutput | None = None) -> StageOutput:  # fmt: skip
    """The train split's tokens -> src_vocab.json, trg_vocab.json (index -> token). With a
    subword stage both are the specials + every piece of its model (so no piece, bytes
    included, is ever <unk>), and min_freq does not apply."""

    def build(out: Path) -> dict:
        table = pq.read_table(tokens.file("train.parquet"))
        stats = {}
        if subword:
            from tasks.subword import MODEL, Subword

            pieces = Subword.read(subword.file(MODEL)).pieces()
            pieces = SPECIALS + [p for p in pieces if p not in SPECIALS]
        for side in ("src", "trg"):
            docs = None if subword else table.column(f"{side}_tokens").to_pylist()
            vocab = pieces if subword else build_vocab_list(docs, min_freq)
            if len(vocab) == len(SPECIALS):
                raise ValueError(
                    f"no {side} token of the train split occurs at least {min_freq} times in "
                    f"{tokens.path}: lower vocab.min_freq (--set vocab.min_freq=N) or use "
                    "more pairs (data.limit_train)"
                )
            (out / f"{side}_vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
            stats[f"{side}_vocab_size"] = len(vocab)
        return stats

    if subword:
        return run_stage(pipeline, "vocab", build=build, params={"subword": True},
                         inputs={"tokens": tokens.fingerprint,
                                 "subword": subword.fingerprint})  # fmt: skip
    return run_stage(
        pipeline,
        "vocab",
        inputs={"tokens": tokens.fingerprint},
        params={"min_freq": min_freq},
        build=build,
    )


def read_vocabs(vocab: StageOutput) -> tuple[list[str], list[str]]:
    return tuple(json.loads(vocab.file(f"{s}_vocab.json").read_text()) for s in ("src", "trg"))


def encode(docs: list[list[str]], vocab: list[str]) -> list[np.ndarray]:
    """<sos> ids... <eos> per document, unknown tokens -> <unk>."""
    index = {t: i for i, t in enumerate(vocab)}
    return [np.array([SOS, *(index.get(t, UNK) for t in doc), EOS], np.int32) for doc in docs]


@task(name="encode", cache_policy=NO_CACHE)
def encode_parallel(pipeline: str, tokens: StageOutput, vocab: StageOutput) -> StageOutput:
    """{split}.parquet (src_ids, trg_ids list<int32>, with <sos>/<eos>)."""

    def build(out: Path) -> dict:
        src_vocab, trg_vocab = read_vocabs(vocab)
        stats = {}
        for split in SPLITS:
            table = pq.read_table(tokens.file(f"{split}.parquet"))
            src = encode(table.column("src_tokens").to_pylist(), src_vocab)
            trg = encode(table.column("trg_tokens").to_pylist(), trg_vocab)
            ids = pa.list_(pa.int32())
            write_table(pa.table({"src_ids": pa.array(src, ids), "trg_ids": pa.array(trg, ids)}),
                        out / f"{split}.parquet")  # fmt: skip
            stats[f"{split}_trg_tokens"] = int(sum(len(t) - 1 for t in trg))
        return stats

    return run_stage(
        pipeline,
        "encode",
        inputs={"tokens": tokens.fingerprint, "vocab": vocab.fingerprint},
        libs=("pyarrow",),
        build=build,
    )


def read_split(encoded: StageOutput, split: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from tasks.vocab import list_column

    table = pq.read_table(encoded.file(f"{split}.parquet"))
    columns = (list_column(table, name) for name in ("src_ids", "trg_ids"))
    return tuple([flat[a:b] for a, b in itertools.pairwise(offsets)] for flat, offsets in columns)
