"""All MLflow calls live here; nothing else imports mlflow.

Everything logs by explicit run id through `MlflowClient`: Prefect runs tasks on worker threads,
where the fluent API's thread-local active run is not the flow's run.
"""

import functools
import json
import os
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.settings import data_dir, redact, tracking_uri
from tasks.engine.stage import run_logger

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


_sqlite_lock = threading.RLock()


def _locked(fn, *args, **kwargs):
    with _sqlite_lock:
        return fn(*args, **kwargs)


class _Serialized:
    """An MlflowClient whose calls hold one process-wide lock. SQLite runs one writer at a
    time anyway; without the lock, tasks logging from many Prefect worker threads at once
    exhaust MLflow's connection pool ("QueuePool limit ... reached") and their metrics are lost."""

    def __init__(self, inner: MlflowClient):
        self._inner = inner

    def __getattr__(self, name):
        attr = getattr(self._inner, name)
        return functools.partial(_locked, attr) if callable(attr) else attr


@functools.cache  # once a process opened the store, its tables are there
def _open_sqlite_once(uri: str) -> None:
    """MLflow creates and migrates a new SQLite store's tables when a process first opens it;
    two processes doing it at once break each other (alembic: "expected to match one row"). A
    file lock beside the database lets one process at a time open it for the first time."""
    from filelock import FileLock

    with _sqlite_lock, FileLock(uri.removeprefix("sqlite:///") + ".lock"):
        c = MlflowClient(tracking_uri=uri, registry_uri=uri)
        c.search_experiments(max_results=1)  # opens the tracking store
        c.search_registered_models(max_results=1)  # and the registry's


def client() -> MlflowClient:
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:"):
        _open_sqlite_once(uri)
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return _Serialized(c) if uri.startswith("sqlite:") else c


def ensure_experiment(name: str) -> str:
    c = client()
    if (found := c.get_experiment_by_name(name)) is not None:
        return found.experiment_id
    uri, location = tracking_uri(), None
    if uri.startswith(("sqlite:", "file:")) or "://" not in uri:  # else the server's own root
        location = (data_dir() / "mlartifacts" / name).as_uri()
    try:
        return c.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created meanwhile by a concurrent run
        return c.get_experiment_by_name(name).experiment_id


def git_commit() -> str:
    cmd, here = ["git", "rev-parse", "HEAD"], Path(__file__).resolve().parent
    try:
        out = subprocess.run(cmd, cwd=here, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def start_run(experiment: str, params: dict, tags: dict, run_name: str | None = None) -> str:
    c = client()
    tags = {k: redact(str(v)) for k, v in tags.items()}  # a REST store takes strings only
    run_id = c.create_run(ensure_experiment(experiment), run_name=run_name, tags=tags).info.run_id
    items = [
        Param(k, redact(json.dumps(v) if isinstance(v, list | dict) else str(v)))
        for k, v in params.items()
    ]
    for i in range(0, len(items), 100):
        c.log_batch(run_id, params=items[i : i + 100])
    return run_id


def set_tags(run_id: str, tags: dict) -> None:
    client().log_batch(run_id, tags=[RunTag(k, redact(str(v))) for k, v in tags.items()])


def log_params(run_id: str, params: dict) -> None:
    from mlflow.entities import Param

    client().log_batch(run_id, params=[Param(k, redact(str(v))) for k, v in params.items()])


def log_metrics(run_id: str, metrics: dict, step: int = 0) -> None:
    log_steps(run_id, [(step, metrics)])


# one-value counts: tags `count.<name>`, so the metrics tab leads with scores and losses
COUNTERS = frozenset({
    "cache_hits", "parity_failures", "beam_width", "n_params", "vocab_size", "src_vocab_size",
    "trg_vocab_size", "train_rows", "decode_errors", "duplicate_rows", "pairs", "train_pairs",
    "new_pairs", "duplicate_pairs", "train_windows", "test_windows", "warm_start_tokens",
    "val_windows",
})  # fmt: skip


def counts(run) -> dict[str, float]:
    """A run's counts (logged by log_metrics as tags `count.<name>`)."""
    return {k[6:]: float(v) for k, v in run.data.tags.items() if k.startswith("count.")}


def values(run) -> dict[str, float]:
    """A run's last metric values and its counts, in one dict."""
    return run.data.metrics | counts(run)


def log_steps(run_id: str, rows: list[tuple[int, dict]]) -> None:
    """Metrics of several steps (step, {name: value}) in batches of 1,000 (MLflow's limit);
    COUNTERS become tags."""
    now = int(time.time() * 1000)
    found = {f"count.{k}": f"{v:g}" for _, row in rows for k, v in row.items() if k in COUNTERS}
    if found:
        set_tags(run_id, found)
    metrics = [Metric(k, float(v), now, step) for step, row in rows for k, v in row.items()
               if k not in COUNTERS]  # fmt: skip
    for i in range(0, len(metrics), 1000):
        client().log_batch(run_id, metrics=metrics[i : i + 1000])


def log_json(run_id: str, obj, name: str) -> None:
    client().log_text(run_id, json.dumps(obj, indent=2, ensure_ascii=False), name)


def log_text(run_id: str, text: str, name: str) -> None:
    client().log_text(run_id, text, name)


def log_figure(run_id: str, figure, name: str) -> None:
    client().log_figure(run_id, figure, name)


def end_run(run_id: str, status: str = "FINISHED", reason: str | None = None) -> None:
    c = client()
    if reason:
        c.set_tag(run_id, "failure_reason", redact(reason)[:5000])
    c.set_terminated(run_id, status=status)


def close_interrupted(run_ids: list[str], by: str | None) -> None:
    """Runs a SIGKILL left RUNNING, now that run `by` resumed their checkpoint: KILLED, and
    their child runs left RUNNING with them (charlm's models that had no checkpoint yet)."""
    for old in run_ids:
        try:
            run = get_run(old)
            if run.info.status != "RUNNING":
                continue
            where = f"tags.mlflow.parentRunId = '{old}' and attributes.status = 'RUNNING'"
            for child in client().search_runs([run.info.experiment_id], where):
                if child.info.run_id not in (by, *run_ids):  # those: resumed or closed here
                    end_run(child.info.run_id, "KILLED", f"its parent run {old} was killed; "
                            f"resumed by run {by}")  # fmt: skip
            end_run(old, "KILLED", f"stopped mid-training; resumed by run {by}")
        except Exception as err:  # not in this store (another tracking URI): nothing to close
            run_logger().info("interrupted run %s not closed: %s", old, err)


def get_run(run_id: str):
    return client().get_run(run_id)


@contextmanager
def tracked_run(experiment: str, params: dict, tags: dict, name: str):
    """An MLflow run: FINISHED on success, KILLED on SIGINT/SIGTERM (KeyboardInterrupt),
    FAILED (with the reason) on any other error."""
    run_id = start_run(experiment, params, tags, run_name=name)
    try:
        yield run_id
    except BaseException as err:
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        try:
            end_run(run_id, status, f"{type(err).__name__}: {err}")
        except Exception as down:  # the store is gone too: report the first error, not this
            run_logger().warning("could not mark MLflow run %s %s: %s", run_id, status, down)
        raise
    end_run(run_id, "FINISHED")


def pipeline_run(
    pipeline: str, profile: str, params: dict, tags: dict | None = None, name: str | None = None
):
    """One MLflow run per pipeline run (a context manager yielding its id)."""
    commit = git_commit()
    all_tags = {"pipeline": pipeline, "profile": profile, "git_commit": commit,
                "mlflow.source.git.commit": commit} | (tags or {})  # fmt: skip
    return tracked_run(pipeline, params, all_tags, name or f"{pipeline}-{profile}")


SCHEMA_TYPES = {"string": "string", "number": "double", "integer": "long", "time": "string"}


def log_dataset(
    run_id: str, name: str, where: dict, digest: str, schema: dict | None = None,
    context: str = "training",
) -> None:  # fmt: skip
    """The run's input data, shown in the MLflow UI's Datasets panel: name, digest, source
    (where: {"url"}, {"hub", "config", "revision"} or {"uri"} of local files) and schema
    ({column: string | number | integer | time})."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.types import ColSpec, DataType, Schema

    if "hub" in where:
        source = HuggingFaceDatasetSource(where["hub"], where.get("config"),
                                          revision=where.get("revision"))  # fmt: skip
    elif "uri" in where:
        import warnings

        with warnings.catch_warnings():  # file:// matches two registered local sources: same
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(where["uri"])
    else:
        source = HTTPDatasetSource(where["url"])
    cols = Schema([ColSpec(DataType[SCHEMA_TYPES.get(t, "string")], c)
                   for c, t in schema.items()]) if schema else None  # fmt: skip
    ds = MetaDataset(source, name=name, digest=digest[:32], schema=cols)
    tag = InputTag("mlflow.data.context", context)
    client().log_inputs(run_id, datasets=[DatasetInput(ds._to_mlflow_entity(), [tag])])


def identical_runs(experiment: str, run_id: str, tags: dict) -> list:
    """Earlier FINISHED runs whose config hash, data and commit equal this run's tags."""
    where = " and ".join(f"tags.`{k}` = '{tags[k]}'"
                         for k in ("config_hash", "data_fingerprint", "git_commit"))  # fmt: skip
    found = _search(experiment, where + " and attributes.status = 'FINISHED'")
    return [r for r in found if r.info.run_id != run_id]


def describe_experiment(name: str, text: str) -> None:
    c = client()
    exp = c.get_experiment_by_name(name)
    if exp is not None and exp.tags.get("mlflow.note.content") != text:
        c.set_experiment_tag(exp.experiment_id, "mlflow.note.content", text)


def child_run(parent_id: str, experiment: str, name: str, params: dict, tags: dict | None = None):
    """A nested run under `parent_id` (shown under it in the MLflow UI)."""
    return tracked_run(experiment, params, {"mlflow.parentRunId": parent_id, **(tags or {})}, name)


def log_stages(run_id: str, stages: list, steps: list[dict] = ()) -> None:
    """Stage keys as tags, the cache hits as metric `cache_hits`, the parts of each key as
    artifact `lineage.json` (what `seqflow explain` reads), with `steps` (lineage.step_entry:
    training) after the stages."""
    keys = {f"stage.{s.stage}.key": s.key[:20] for s in stages}
    set_tags(run_id, keys | {f"stage.{s.stage}.cached": s.cached for s in stages})
    log_metrics(run_id, {"cache_hits": sum(s.cached for s in stages)})
    entries = [{"stage": s.stage, "key": s.key, "cached": s.cached, "parts": s.parts}
               for s in stages]  # fmt: skip
    log_json(run_id, {"stages": entries + list(steps)}, LINEAGE)


LINEAGE = "lineage.json"


def lineage(run_id: str) -> list[dict] | None:
    """A run's lineage entries, or None when it logged none."""
    try:
        return load_json(run_id, LINEAGE)["stages"]
    except (OSError, KeyError, ValueError, mlflow.exceptions.MlflowException):
        return None


def _search(experiment: str, where: str, **kwargs) -> list:
    """Runs of an experiment matching the filter `where`, newest first."""
    c = client()
    if (exp := c.get_experiment_by_name(experiment)) is None:
        return []
    order = ["attributes.start_time DESC"]
    return list(c.search_runs([exp.experiment_id], where, order_by=order, **kwargs))


def pipeline_runs(experiment: str, before_ms: int | None = None, limit: int = 50) -> list:
    """Top-level runs of a pipeline (not child runs), newest first, started before `before_ms`."""
    where = "tags.pipeline = '" + experiment + "'"
    if before_ms is not None:
        where += f" and attributes.start_time < {before_ms}"
    return _search(experiment, where, max_results=limit)


CHAMPION = "champion"


def champion(name: str):
    """The registered model version behind alias `champion`, or None."""
    try:
        return client().get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:  # no such model or no such alias
        return None


MOVE = "champion_move."  # registered-model tag prefix: one tag per move of the alias


def alias_history(name: str) -> list[dict]:
    """Every move of the champion alias, oldest first. MLflow keeps no history of aliases, so
    each move is a tag of the registered model: it lives in the tracking store, beside the
    alias, and a team sharing a server sees the same history."""
    try:
        tags = client().get_registered_model(name).tags
    except mlflow.exceptions.MlflowException:
        return []
    return [json.loads(v) for k, v in sorted(tags.items()) if k.startswith(MOVE)]


def version_score(name: str, version: int | str, metric: str | None) -> float | None:
    """A version's score on `metric`: the retrain's fixed-data score when it has one (version
    tag `score.<metric>`), else the metric its run logged, else None."""
    if not metric:
        return None
    mv = client().get_model_version(name, str(version))
    if f"score.{metric}" in mv.tags:
        return float(mv.tags[f"score.{metric}"])
    return get_run(mv.run_id).data.metrics.get(metric)


def set_version_score(name: str, version: int | str, metric: str, score: float) -> None:
    client().set_model_version_tag(name, str(version), f"score.{metric}", f"{score:.6g}")


def _data_of(name: str, version: int | str) -> str | None:
    run_id = client().get_model_version(name, str(version)).run_id
    return get_run(run_id).data.tags.get("data_fingerprint")


def promote(
    name: str, version: int | str, reason: str, metric: str | None = None, rollback: bool = False
) -> dict:
    """Point alias `champion` at `version` and record the move (from, to, both scores on
    `metric`, the data each was trained on, the reason). Returns the record."""
    c = client()
    c.get_model_version(name, str(version))  # raises when the version does not exist
    before = champion(name)
    c.set_registered_model_alias(name, CHAMPION, str(version))
    old = int(before.version) if before is not None else None
    move = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "from": old,
        "to": int(version),
        "metric": metric,
        "from_score": version_score(name, old, metric) if old else None,
        "to_score": version_score(name, version, metric),
        "from_data": _data_of(name, old) if old else None,
        "to_data": _data_of(name, version),
        "reason": reason[:500],
        "rollback": rollback,
    }
    c.set_registered_model_tag(name, f"{MOVE}{time.time_ns() // 1000:017d}", json.dumps(move))
    c.update_registered_model(name, description=_history_markdown(name, alias_history(name)))
    return move


def rollback_target(moves: list[dict]) -> int | None:
    """The version that held the alias before the current one: moves are a stack, where each
    promotion pushes the version it replaced and each rollback pops one."""
    stack: list[int] = []
    for m in moves:
        if m.get("rollback"):
            stack = stack[:-1]  # pops one, if any
        elif m.get("from") is not None and m["from"] != m["to"]:
            stack.append(m["from"])
    return stack[-1] if stack else None


def runs_with_tag(experiment: str, key: str, value: str) -> list:
    """FINISHED runs of an experiment whose tag `key` equals `value`, newest first."""
    return _search(experiment, f"tags.`{key}` = '{value}' and attributes.status = 'FINISHED'")


def model_version_of_run(name: str, run_id: str):
    """The newest version of model `name` logged by run `run_id` or by one of its child runs
    (pipelines that train several models register the best child's)."""
    c = client()
    found = c.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if not found:
        experiment_id = c.get_run(run_id).info.experiment_id
        for child in c.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{run_id}'"):
            found += c.search_model_versions(f"name = '{name}' and run_id = '{child.info.run_id}'")
    return max(found, key=lambda v: int(v.version)) if found else None


def load_model(name: str, version: int | str):
    """The torch module of a registered version: a raw-input pyfunc's (flows/serve_*.py:
    its `.model`) or, for versions logged with mlflow.pytorch, the module itself."""
    import mlflow.pyfunc
    import mlflow.pytorch

    client()
    uri = f"models:/{name}/{version}"
    if "pytorch" in mlflow.models.get_model_info(uri).flavors:
        return mlflow.pytorch.load_model(uri, map_location="cpu")
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().model


def load_json(run_id: str, name: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = client().download_artifacts(run_id, name, tmp)
        return json.loads(Path(path).read_text())


def run_link(run_id: str) -> str:
    """Where the run shows in the MLflow UI."""
    uri = tracking_uri()
    ui = os.environ.get("SEQFLOW_MLFLOW_UI", "http://127.0.0.1:5000")  # `seqflow server`'s
    base = redact(uri.rstrip("/")) if uri.startswith("http") else ui.rstrip("/")
    return f"{base}/#/experiments/{get_run(run_id).info.experiment_id}/runs/{run_id}"


@task(name="register", cache_policy=NO_CACHE)
def register_task(run_id: str, model, registered_name: str, example_ids):
    """Log the trained torch model (pickle format, with a signature: model(example_ids)) and
    register a new version of it; the first version of a model becomes its champion."""
    import mlflow.pytorch
    import numpy as np
    import torch
    from mlflow.models import infer_signature

    example = np.asarray(example_ids)
    if np.issubdtype(example.dtype, np.integer):
        example = example.astype(np.int64)
    model.eval()
    with torch.no_grad():
        example_output = model(torch.as_tensor(example)).cpu().numpy()
    client()
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            model.cpu(),
            name="model",
            serialization_format="pickle",
            signature=infer_signature(example, example_output),
            pip_requirements=REQUIREMENTS,
            registered_model_name=registered_name,
        )
    return registered(run_id, registered_name, info.registered_model_version, info.model_uri)


def registered(run_id: str, registered_name: str, version, uri: str) -> dict:
    """Tag the run with its new model version (flows/champion.py decides whether it serves)."""
    set_tags(run_id, {"registered_model": f"{registered_name}/{version}"})
    run_logger().info("registered model %s version %s (%s)", registered_name, version, uri)
    return {"version": version, "uri": uri}


def describe_version(name: str, version, text: str, tags: dict) -> None:
    c = client()
    c.update_model_version(name, str(version), description=redact(text))
    for k, v in tags.items():
        c.set_model_version_tag(name, str(version), k, redact(str(v)))


def version_profile(name: str, version) -> str | None:
    """The profile a version was trained with (its tag, else its run's)."""
    mv = client().get_model_version(name, str(version))
    return mv.tags.get("profile") or get_run(mv.run_id).data.tags.get("profile")


def _history_markdown(name: str, moves: list[dict]) -> str:
    rows = [f"| {m['at']} | {m['from'] or '-'} | {m['to']} | {m.get('metric') or '-'} | "
            f"{_num(m.get('from_score'))} | {_num(m.get('to_score'))} | {m['reason']} |"
            for m in moves]  # fmt: skip
    head = [f"# {name}: champion history", "", "Alias `champion`, newest last.", "",
            "| when | from | to | metric | from score | to score | reason |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    return "\n".join(head + rows)


def _num(value) -> str:
    return "-" if value is None else f"{value:.4g}"


REQUIREMENTS = [f"torch=={__import__('torch').__version__.split('+')[0]}", "numpy"]
