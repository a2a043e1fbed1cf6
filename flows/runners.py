"""Where a flow's tasks run: in this process (the default) or sharded on Dask.

`seqflow run PIPELINE --runner dask` runs the flow on a prefect-dask DaskTaskRunner: the
preprocessing stages map their row-group shards onto it (tasks/engine/shards.py). Without an address
it starts a LocalCluster (one single-threaded worker process per shard slot); with
`--dask-address tcp://host:8786` it uses an existing scheduler, whose workers must import this
project and see the same data folder (shared disk).
"""

from prefect import Flow

RUNNERS = ("sequential", "dask")
# imported by each LocalCluster worker as it starts, not by its first shard
PRELOAD = [
    "prefect.task_engine",
    "tasks.text",
    "tasks.vocab",
    "tasks.windows",
    "tasks.translation",
    "tasks.chars",
]


def share_api() -> str:
    """The Prefect API that worker processes must report to. Without PREFECT_API_URL this
    process would use a private temporary server the workers cannot find (each would start
    its own and time out): start it now and export its URL to the workers' environment."""
    import os

    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()  # the same instance this process's client uses
        server.start(timeout=120)  # a busy machine can take longer than the default 20 s
        url = server.api_url
    os.environ["PREFECT_API_URL"] = url
    return url


def dask_runner(address: str | None = None, workers: int | None = None, processes: bool = True):
    from prefect_dask import DaskTaskRunner

    if address:
        return DaskTaskRunner(address=address)
    if processes:
        share_api()
    cluster = {"n_workers": workers or 2, "threads_per_worker": 1, "processes": processes,
               "dashboard_address": None, "preload": PRELOAD}  # fmt: skip
    return DaskTaskRunner(cluster_kwargs=cluster)


def with_runner(
    flow: Flow,
    runner: str = "sequential",
    address: str | None = None,
    workers: int | None = None,
    processes: bool = True,
) -> Flow:
    """The flow as given, or a copy of it on a Dask task runner."""
    if runner == "sequential":
        return flow
    if runner == "dask":
        return flow.with_options(task_runner=dask_runner(address, workers, processes))
    raise ValueError(f"unknown runner {runner!r}: use one of {', '.join(RUNNERS)}")
