"""Sliding windows over encoded documents, vectorised with NumPy."""

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.stage import StageOutput, run_stage, write_table


def sliding_window_pairs(
    ids: np.ndarray, offsets: np.ndarray, wsize: int, with_distance: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Every (center, context) pair within ±wsize positions of the same document, self excluded.

    `ids` holds all documents' token ids back to back; document r is ids[offsets[r]:offsets[r+1]].
    Pairs come out in the notebook's order: document, then center position, then offset
    -wsize..wsize. Returns an int32 array of shape [pairs, 2] (center, context), and with
    `with_distance` also each pair's |offset| (int8, 1..wsize).
    """
    if wsize < 1:
        raise ValueError(f"window size must be >= 1, got {wsize}")
    n = len(ids)
    lengths = np.diff(offsets)
    doc_of = np.repeat(np.arange(len(lengths)), lengths)  # [n] document of each position
    pos = np.arange(n)
    start = offsets[:-1][doc_of]  # [n] first position of each position's document
    end = offsets[1:][doc_of]  # [n] one past its last position
    deltas = np.array([d for d in range(-wsize, wsize + 1) if d != 0])
    ctx = pos[:, None] + deltas[None, :]  # [n, 2*wsize] context positions
    valid = (ctx >= start[:, None]) & (ctx < end[:, None])
    centers = np.broadcast_to(ids[:, None], ctx.shape)[valid]
    contexts = ids[ctx[valid]]
    pairs = np.stack([centers, contexts], axis=1).astype(np.int32, copy=False)
    if not with_distance:
        return pairs
    distance = np.broadcast_to(np.abs(deltas).astype(np.int8)[None, :], ctx.shape)[valid]
    return pairs, distance


def read_pairs(pairs: StageOutput) -> np.ndarray:
    """All shards of a windows stage output as one int32 array [pairs, 2] (center, context)."""
    shards = sorted(n for n in pairs.files if n.startswith("pairs-"))
    if not shards:
        return np.zeros((0, 2), dtype=np.int32)
    table = pa.concat_tables(pq.read_table(pairs.file(n)) for n in shards)
    return np.stack(
        [table.column("center").to_numpy(), table.column("context").to_numpy()], axis=1
    ).astype(np.int32, copy=False)


def read_distances(pairs: StageOutput) -> np.ndarray:
    """Each pair's window distance |center - context position| (int8), in read_pairs order."""
    shards = sorted(n for n in pairs.files if n.startswith("pairs-"))
    parts = [pq.read_table(pairs.file(n), columns=["distance"]).column(0) for n in shards]
    return pa.chunked_array(parts, pa.int8()).to_numpy() if parts else np.zeros(0, np.int8)


@task(name="windows", cache_policy=NO_CACHE)
def window_pairs(pipeline: str, encoded: StageOutput, size: int, shard_rows: int) -> StageOutput:
    """ids.parquet -> pairs-00000.parquet ... (center, context int32; distance int8), sharded."""
    from tasks.vocab import read_encoded

    def build(out: Path) -> dict:
        ids, offsets, _ = read_encoded(encoded)
        pairs, distance = sliding_window_pairs(ids, offsets, size, with_distance=True)
        shards = max(1, -(-len(pairs) // shard_rows))
        for s in range(shards):
            part = slice(s * shard_rows, (s + 1) * shard_rows)
            table = pa.table(
                {
                    "center": pa.array(pairs[part, 0]),
                    "context": pa.array(pairs[part, 1]),
                    "distance": pa.array(distance[part]),
                }
            )
            write_table(table, out / f"pairs-{s:05d}.parquet")
        return {"pairs": int(len(pairs)), "shards": shards}

    return run_stage(
        pipeline,
        "windows",
        inputs={"ids": encoded.fingerprint},
        params={"size": size, "shard_rows": shard_rows},
        code=(sys.modules[__name__],),
        libs=("pyarrow", "numpy"),
        build=build,
    )
