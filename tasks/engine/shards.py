"""Row-group shards: preprocessing stages work on one Parquet row group at a time.

Stage tables are written in row groups of ROWS_PER_SHARD rows. A stage maps a shard function
over its input's row groups; each call writes a part file and returns small stats, and the
parts are then streamed into the stage's output in shard order. `map_shards` runs the calls one
after another in this process, or, when the flow runs on a Dask task runner (`seqflow run
--runner dask`), as Dask tasks on that runner's cluster. The merge is the same code in both
cases, so the outputs are byte for byte the same; memory holds a few shards, not the corpus.
"""

import itertools
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROWS_PER_SHARD = 8192


def dask_client():
    """The Dask client of the flow run's task runner when it is a prefect-dask DaskTaskRunner,
    else None."""
    from prefect.context import FlowRunContext

    runner = getattr(FlowRunContext.get(), "task_runner", None)
    if runner is None:
        return None
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        return None
    return runner.client if isinstance(runner, DaskTaskRunner) else None


def map_shards(fn, shards: int, **kwargs) -> Iterator:
    """fn(i, **kwargs) for i in range(shards): the results, in shard order, as they are needed
    (one held here at a time). On a Dask task runner the calls are plain Dask tasks on its
    cluster: a Prefect task run per shard would cost more than tokenizing the shard."""
    client = dask_client() if shards else None
    if client is not None:
        for future in client.map(fn, range(shards), pure=False, **kwargs):
            yield future.result()
            future.release()
        return
    for i in range(shards):
        yield fn(i, **kwargs)


def shard_count(path: str | Path) -> int:
    return pq.ParquetFile(path).num_row_groups


def read_shard(path: str | Path, shard: int, columns: list[str] | None = None) -> pa.Table:
    return pq.ParquetFile(path).read_row_group(shard, columns=columns)


def map_parts(fn, src: Path, out: Path, merge, **kwargs) -> tuple[list, object]:
    """map_shards of fn(i, src=src, parts=folder, **kwargs) over the row groups of `src`, each
    call writing part file i into a scratch folder beside `out`; then merge(the parts' tables,
    in shard order). Returns (fn's results, merge's); the part files are removed."""
    parts, shards = scratch(out), shard_count(src)
    try:
        results = list(map_shards(fn, shards, src=str(src), parts=str(parts), **kwargs))
        return results, merge(read_parts(parts, shards))
    finally:
        shutil.rmtree(parts, ignore_errors=True)


def rechunk(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """The tables' rows again, in tables of `rows` rows (the last one shorter; none if empty)."""
    buffer, pending = [], 0
    for table in tables:
        buffer.append(table)
        pending += table.num_rows
        while pending >= rows:
            merged = pa.concat_tables(buffer).combine_chunks()
            yield merged.slice(0, rows)
            buffer, pending = [merged.slice(rows)], pending - rows
    if pending:
        yield pa.concat_tables(buffer).combine_chunks()


def write_shards(tables: Iterable[pa.Table], path: Path) -> int:
    """Stream tables into one Parquet file in row groups of ROWS_PER_SHARD rows (the shards);
    returns the row count. An empty input still writes a file (with the first table's schema,
    or none at all)."""
    tables = iter(tables)
    if (first := next(tables, None)) is None:
        return 0
    total = 0
    with pq.ParquetWriter(path, first.schema, compression="zstd") as writer:
        for chunk in rechunk(itertools.chain([first], tables), ROWS_PER_SHARD):
            writer.write_table(chunk, row_group_size=ROWS_PER_SHARD)
            total += chunk.num_rows
    return total


def part_path(parts: str | Path, shard: int) -> Path:
    return Path(parts) / f"part-{shard:06d}.parquet"


def scratch(out: Path) -> Path:
    """A folder for part files beside a stage's temp folder (not inside it: the manifest
    lists every file there)."""
    folder = out.parent / f"{out.name}.parts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def read_parts(parts: Path, shards: int) -> Iterator[pa.Table]:
    return (pq.read_table(part_path(parts, i)) for i in range(shards))


def merge_parts(parts: Path, shards: int, path: Path) -> int:
    """Stream the part files, in shard order, into one file; then drop the parts."""
    try:
        return write_shards(read_parts(parts, shards), path)
    finally:
        shutil.rmtree(parts, ignore_errors=True)
