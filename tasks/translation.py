"""Parallel-text stages for translation: ingest archives -> tokenize -> vocab -> encode.

Each split is one Parquet file per stage: train, valid, test.
"""

import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.stage import StageOutput, run_stage, write_table

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
    from tasks.catalog import DATASETS
    from tasks.data import fetch

    spec = DATASETS[dataset]
    archives = {split: fetch(spec, name) for split, (name, _) in SPLITS.items()}

    def build(out: Path) -> dict:
        stats = {}
        with tempfile.TemporaryDirectory() as tmp:
            for split, (_, stem) in SPLITS.items():
                names = safe_extract(archives[split], Path(tmp) / split)
                src = Path(tmp) / split / find_member(names, f"{stem}.{src_lang}")
                trg = Path(tmp) / split / find_member(names, f"{stem}.{trg_lang}")
                pairs = read_parallel(src, trg)
                if split == "train" and limit_train:
                    pairs = pairs[:limit_train]
                table = pa.table({"src": [p[0] for p in pairs], "trg": [p[1] for p in pairs]})
                write_table(table, out / f"{split}.parquet")
                stats[f"{split}_pairs"] = len(pairs)
        return stats

    return run_stage(
        pipeline,
        "ingest",
        inputs={name: spec.file(name).sha256 for name, _ in SPLITS.values()},
        params={"dataset": dataset, "src": src_lang, "trg": trg_lang, "limit_train": limit_train},
        code=(sys.modules[__name__],),
        libs=("pyarrow",),
        build=build,
    )


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
    out = []
    for doc in tokenizer.pipe(texts, batch_size=2000):
        toks = [t.text.lower() if lowercase else t.text for t in doc]
        out.append(toks[::-1] if reverse else toks)
    return out


@task(name="tokenize", cache_policy=NO_CACHE)
def tokenize_parallel(pipeline: str, rows: StageOutput, cfg) -> StageOutput:
    """{split}.parquet -> {split}.parquet (src_tokens, trg_tokens)."""

    def build(out: Path) -> dict:
        src_tok, trg_tok = load_tokenizer(cfg.src_model), load_tokenizer(cfg.trg_model)
        stats = {}
        for split in SPLITS:
            table = pq.read_table(rows.file(f"{split}.parquet"))
            src = tokenize_texts(table.column("src").to_pylist(), src_tok, cfg.lowercase,
                                 cfg.reverse_src)  # fmt: skip
            trg = tokenize_texts(table.column("trg").to_pylist(), trg_tok, cfg.lowercase, False)
            result = pa.table({"src_tokens": pa.array(src, pa.list_(pa.string())),
                               "trg_tokens": pa.array(trg, pa.list_(pa.string()))})  # fmt: skip
            write_table(result, out / f"{split}.parquet")
            stats[f"{split}_src_tokens"] = sum(map(len, src))
        return stats

    return run_stage(
        pipeline,
        "tokenize",
        inputs={"rows": rows.fingerprint},
        params=cfg.model_dump(),
        code=(sys.modules[__name__],),
        libs=("spacy", "pyarrow"),
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
def build_vocabs(pipeline: str, tokens: StageOutput, min_freq: int) -> StageOutput:
    """The train split's tokens -> src_vocab.json, trg_vocab.json (index -> token)."""

    def build(out: Path) -> dict:
        table = pq.read_table(tokens.file("train.parquet"))
        stats = {}
        for side in ("src", "trg"):
            vocab = build_vocab_list(table.column(f"{side}_tokens").to_pylist(), min_freq)
            if len(vocab) == len(SPECIALS):
                raise ValueError(
                    f"no {side} token of the train split occurs at least {min_freq} times in "
                    f"{tokens.path}: lower vocab.min_freq (--set vocab.min_freq=N) or use "
                    "more pairs (data.limit_train)"
                )
            (out / f"{side}_vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
            stats[f"{side}_vocab_size"] = len(vocab)
        return stats

    return run_stage(
        pipeline,
        "vocab",
        inputs={"tokens": tokens.fingerprint},
        params={"min_freq": min_freq},
        code=(sys.modules[__name__],),
        libs=(),
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
        params={},
        code=(sys.modules[__name__],),
        libs=("pyarrow",),
        build=build,
    )


def read_split(encoded: StageOutput, split: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    table = pq.read_table(encoded.file(f"{split}.parquet"))
    out = []
    for name in ("src_ids", "trg_ids"):
        col = table.column(name).combine_chunks()
        flat = col.values.to_numpy(zero_copy_only=False)
        offsets = col.offsets.to_numpy()
        out.append([flat[offsets[i] : offsets[i + 1]] for i in range(len(col))])
    return out[0], out[1]
