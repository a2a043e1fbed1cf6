"""Text to tokens, as the notebooks do it (pure functions; the flow wraps them in stages)."""

import contextlib
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.data import fetch
from tasks.engine.catalog import NLTK_STOPWORDS
from tasks.engine.shards import map_parts, part_path, read_shard, write_shards
from tasks.engine.stage import StageOutput, run_stage


@lru_cache(maxsize=8)
def stopword_set(language: str) -> frozenset[str]:
    """NLTK's stopword list: from NLTK_DATA, the mirror, or the download cache."""
    import nltk
    from nltk.corpus import stopwords

    with contextlib.suppress(LookupError, OSError):
        return frozenset(stopwords.words(language))
    zip_path = fetch(NLTK_STOPWORDS, "corpora/stopwords.zip")  # mirror or verified download
    nltk.data.path.insert(0, str(zip_path.parent.parent))  # the folder holding corpora/
    try:
        return frozenset(stopwords.words(language))
    except (LookupError, OSError):
        known = ", ".join(stopwords.fileids())
        raise ValueError(
            f"NLTK has no stopword list {language!r} (tokenize.stopwords); its lists: {known}. "
            "Set tokenize.stopwords to one of them, or none"
        ) from None


def tweet_tokenizer(
    *,
    drop_pattern: str,
    stopwords: str | list | None,
    stemmer: str,
    lowercase: bool = True,
    language: str | None = "english",
) -> Callable[[str], list[str]]:
    """The notebook's split_tokens: lowercase, drop characters, split on spaces, filter, stem.

    stopwords: an NLTK list's language, the words themselves (what a served model carries),
    or None. Stopwords are matched before stemming, as the notebook does; the stem of each
    distinct token is computed once. language: the Snowball stemmer's (None: no stemming).
    """
    drop = re.compile(drop_pattern)
    stop = stopword_set(stopwords) if isinstance(stopwords, str) else frozenset(stopwords or ())
    stem = str  # "none" (the config allows no other): the token itself
    if stemmer == "snowball" and language:
        from nltk.stem.snowball import SnowballStemmer

        stem = lru_cache(maxsize=None)(SnowballStemmer(language).stem)

    def tokenize(text: str) -> list[str]:
        if lowercase:
            text = text.lower()
        words = drop.sub("", text).split(" ")  # runs of spaces leave "", dropped below
        return [stem(w) for w in words if w and w not in stop]

    return tokenize


def tokenize_shard(shard: int, src: str, parts: str, cfg: dict) -> int:
    """Row group `shard` of rows.parquet -> part file (id, label, tokens list<string>); returns
    its token count. cfg: the tokenize section, tweet_tokenizer's arguments."""
    table = read_shard(src, shard)
    tokenize = tweet_tokenizer(**cfg)
    docs = [tokenize(t) if t is not None else [] for t in table.column("tweet").to_pylist()]
    keep = [c for c in ("id", "label") if c in table.column_names]
    result = table.select(keep).append_column("tokens", pa.array(docs, pa.list_(pa.string())))
    pq.write_table(result, part_path(parts, shard))
    return sum(map(len, docs))


@task(name="tokenize", cache_policy=NO_CACHE)
def tokenize_tweets(pipeline: str, rows: StageOutput, cfg) -> StageOutput:
    """rows.parquet (id, label, tweet) -> tokens.parquet (id, label, tokens list<string>),
    one row group of rows at a time (on Dask workers with `--runner dask`)."""

    def build(out: Path) -> dict:
        tokens, written = map_parts(tokenize_shard, rows.file("rows.parquet"), out,
                                    lambda parts: write_shards(parts, out / "tokens.parquet"),
                                    cfg=cfg.model_dump())  # fmt: skip
        return {"rows": written, "tokens": sum(tokens)}

    return run_stage(
        pipeline,
        "tokenize",
        inputs={"rows": rows.fingerprint},
        params=cfg.model_dump(),
        libs=("nltk", "pyarrow"),
        build=build,
    )
