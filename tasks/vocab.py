"""Vocabularies: counting tokens, filtering rare ones, mapping tokens to ids."""

import itertools
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.shards import map_parts, part_path, read_shard, write_shards
from tasks.engine.stage import StageOutput, run_stage


def count_tokens(docs: Iterable[Sequence[str]]) -> Counter:
    """Counts in first-occurrence order (a Counter keeps insertion order)."""
    return Counter(itertools.chain.from_iterable(docs))


def merge_counts(parts: Iterable[dict]) -> Counter:
    """Per-shard counts, given in shard order, summed: first-occurrence order is kept (a token
    new in shard k comes after every token of shards < k, in shard k's own order)."""
    total: Counter = Counter()
    for part in parts:
        total.update(part)
    return total


def frequent_tokens(counts: Counter, min_count: int) -> list[str]:
    """Tokens seen at least `min_count` times, in first-occurrence order (the notebook's
    `{k: v for k, v in counts.items() if v > 10}` is `min_count=11`)."""
    return [tok for tok, n in counts.items() if n >= min_count]


def encode_docs(
    docs: Iterable[Sequence[str]], tok2id: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Drop out-of-vocabulary tokens and encode: flat int32 ids plus row offsets (len = rows+1)."""
    rows = [[i for i in map(tok2id.get, doc) if i is not None] for doc in docs]
    offsets = np.cumsum([0, *map(len, rows)], dtype=np.int64)
    return np.fromiter(itertools.chain.from_iterable(rows), np.int32, offsets[-1]), offsets


def read_vocab(vocab: StageOutput) -> tuple[list[str], np.ndarray]:
    """(id2tok, counts) from a vocab stage output."""
    data = json.loads(vocab.file("vocab.json").read_text())
    return data["tokens"], np.asarray(data["counts"], dtype=np.int64)


def read_tokens(tokens: StageOutput) -> tuple[list[list[str]], np.ndarray]:
    """(token lists, labels) from a tokenize stage output."""
    table = pq.read_table(tokens.file("tokens.parquet"), columns=["tokens", "label"])
    return table.column("tokens").to_pylist(), table.column("label").to_numpy()


def list_column(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(flat int32 values, int64 offsets from 0) of a list<int32> column."""
    column = table.column(name).combine_chunks()
    values = column.values.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
    offsets = column.offsets.to_numpy().astype(np.int64)
    return values[offsets[0] : offsets[-1]], offsets - offsets[0]


def read_encoded(encoded: StageOutput) -> tuple[np.ndarray, np.ndarray, pa.Table]:
    """(flat ids, offsets, table) from an encode stage output."""
    table = pq.read_table(encoded.file("ids.parquet"))
    return *list_column(table, "ids"), table


def count_shard(shard: int, src: str, parts: str) -> None:
    """Token counts of row group `shard` of tokens.parquet, in first-occurrence order -> part
    file (token, count). A file, not a returned dict: cheap to move off a Dask worker."""
    counts = count_tokens(read_shard(src, shard, ["tokens"]).column("tokens").to_pylist())
    table = pa.table({"token": list(counts), "count": list(counts.values())})
    pq.write_table(table, part_path(parts, shard))


def read_counts(tables: Iterable[pa.Table]) -> Iterator[dict[str, int]]:
    return (dict(zip(*t.to_pydict().values(), strict=True)) for t in tables)


@task(name="vocab", cache_policy=NO_CACHE)
def build_vocab(pipeline: str, tokens: StageOutput, min_count: int) -> StageOutput:
    """tokens.parquet -> vocab.json: {"tokens": [index -> token], "counts": [...]}; counted per
    row group (on Dask workers with `--runner dask`), merged in shard order."""

    def build(out: Path) -> dict:
        _, counts = map_parts(count_shard, tokens.file("tokens.parquet"), out,
                              lambda parts: merge_counts(read_counts(parts)))  # fmt: skip
        kept = frequent_tokens(counts, min_count)
        if not kept:
            raise ValueError(
                f"no token occurs at least {min_count} times in {tokens.path}: lower "
                "vocab.min_count (--set vocab.min_count=N) or use more rows"
            )
        payload = {"tokens": kept, "counts": [counts[t] for t in kept]}
        (out / "vocab.json").write_text(json.dumps(payload, ensure_ascii=False))
        return {"vocab_size": len(kept), "distinct_tokens": len(counts)}

    return run_stage(
        pipeline,
        "vocab",
        inputs={"tokens": tokens.fingerprint},
        params={"min_count": min_count},
        build=build,
    )


def drop_rare_shard(shard: int, src: str, vocab: str, parts: str) -> int:
    """Row group `shard` of tokens.parquet -> part file (id, label, ids list<int32>)."""
    table = read_shard(src, shard)
    tok2id = {t: i for i, t in enumerate(json.loads(Path(vocab).read_text())["tokens"])}
    ids, offsets = encode_docs(table.column("tokens").to_pylist(), tok2id)
    column = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(ids))
    keep = [c for c in ("id", "label") if c in table.column_names]
    pq.write_table(table.select(keep).append_column("ids", column), part_path(parts, shard))
    return int(len(ids))


@task(name="drop_rare", cache_policy=NO_CACHE)
def drop_rare_tokens(pipeline: str, tokens: StageOutput, vocab: StageOutput) -> StageOutput:
    """tokens.parquet + vocab -> ids.parquet (id, label, ids list<int32>), rare tokens dropped,
    one row group at a time (on Dask workers with `--runner dask`)."""

    def build(out: Path) -> dict:
        kept, rows = map_parts(drop_rare_shard, tokens.file("tokens.parquet"), out,
                               lambda parts: write_shards(parts, out / "ids.parquet"),
                               vocab=str(vocab.file("vocab.json")))  # fmt: skip
        return {"rows": rows, "tokens_kept": int(sum(kept))}

    return run_stage(
        pipeline,
        "drop_rare",
        inputs={"tokens": tokens.fingerprint, "vocab": vocab.fingerprint},
        libs=("pyarrow",),
        build=build,
    )
