"""Sliding windows over encoded documents, vectorised with NumPy."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.shards import map_parts, part_path, read_shard, rechunk
from tasks.engine.stage import StageOutput, run_stage, write_table
from tasks.vocab import list_column


def sliding_window_pairs(
    ids: np.ndarray, offsets: np.ndarray, wsize: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every (center, context) pair within ±wsize positions of the same document, self excluded.

    `ids` holds all documents' token ids back to back; document r is ids[offsets[r]:offsets[r+1]].
    Pairs come out in the notebook's order: document, then center position, then offset
    -wsize..wsize. Returns an int32 array of shape [pairs, 2] (center, context) and each
    pair's |offset| (int8, 1..wsize).
    """
    if wsize < 1:
        raise ValueError(f"window size must be >= 1, got {wsize}")
    lengths = np.diff(offsets)
    doc_of = np.repeat(np.arange(len(lengths)), lengths)  # [n] document of each position
    pos = np.arange(len(ids))
    start = offsets[:-1][doc_of]  # [n] first position of each position's document
    end = offsets[1:][doc_of]  # [n] one past its last position
    deltas = np.array([d for d in range(-wsize, wsize + 1) if d != 0])
    ctx = pos[:, None] + deltas[None, :]  # [n, 2*wsize] context positions
    valid = (ctx >= start[:, None]) & (ctx < end[:, None])
    centers = np.broadcast_to(ids[:, None], ctx.shape)[valid]
    contexts = ids[ctx[valid]]
    pairs = np.stack([centers, contexts], axis=1).astype(np.int32, copy=False)
    distance = np.broadcast_to(np.abs(deltas).astype(np.int8)[None, :], ctx.shape)[valid]
    return pairs, distance


def read_pairs(pairs: StageOutput) -> np.ndarray:
    """All shards of a windows stage output as one int32 array [pairs, 2] (center, context);
    window_pairs writes at least one shard, of PAIR_SCHEMA."""
    shards = sorted(n for n in pairs.files if n.startswith("pairs-"))
    table = pa.concat_tables(pq.read_table(pairs.file(n)) for n in shards)
    return np.stack([table.column(c).to_numpy() for c in ("center", "context")], axis=1)


def read_distances(pairs: StageOutput) -> np.ndarray:
    """Each pair's window distance |center - context position| (int8), in read_pairs order."""
    shards = sorted(n for n in pairs.files if n.startswith("pairs-"))
    parts = [pq.read_table(pairs.file(n), columns=["distance"]).column(0) for n in shards]
    return pa.chunked_array(parts, pa.int8()).to_numpy() if parts else np.zeros(0, np.int8)


PAIR_SCHEMA = pa.schema([("center", pa.int32()), ("context", pa.int32()), ("distance", pa.int8())])


def window_shard(shard: int, src: str, size: int, parts: str) -> int:
    """Row group `shard` of ids.parquet -> part file of its pairs (center, context, distance)."""
    ids, offsets = list_column(read_shard(src, shard, ["ids"]), "ids")
    pairs, distance = sliding_window_pairs(ids, offsets, size)
    table = pa.table({"center": pairs[:, 0], "context": pairs[:, 1], "distance": distance})
    pq.write_table(table, part_path(parts, shard))
    return len(pairs)


def write_pair_shards(tables, out: Path, shard_rows: int) -> int:
    """Stream pair tables into pairs-00000.parquet, ... of `shard_rows` pairs each (the last
    one shorter; one empty shard when there are no pairs). Returns the number of shards."""
    written = 0
    for written, table in enumerate(rechunk(tables, shard_rows), start=1):
        write_table(table, out / f"pairs-{written - 1:05d}.parquet")
    if not written:
        write_table(PAIR_SCHEMA.empty_table(), out / "pairs-00000.parquet")
    return max(written, 1)


@task(name="windows", cache_policy=NO_CACHE)
def window_pairs(pipeline: str, encoded: StageOutput, size: int, shard_rows: int) -> StageOutput:
    """ids.parquet -> pairs-00000.parquet ... (center, context int32; distance int8), sharded;
    computed one row group of documents at a time (on Dask workers with `--runner dask`)."""

    def build(out: Path) -> dict:
        counts, written = map_parts(window_shard, encoded.file("ids.parquet"), out,
                                    lambda parts: write_pair_shards(parts, out, shard_rows),
                                    size=size)  # fmt: skip
        return {"pairs": int(sum(counts)), "shards": written}

    return run_stage(
        pipeline,
        "windows",
        inputs={"ids": encoded.fingerprint},
        params={"size": size, "shard_rows": shard_rows},
        libs=("pyarrow", "numpy"),
        build=build,
    )
