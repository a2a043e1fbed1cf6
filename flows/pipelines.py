"""What the CLI, retraining and deployments need to know of each pipeline.

A new pipeline plugs in with one entry in MODULES: a module `flows/<name>.py` holding the flow
`<name>(config=...)`, `fingerprint(config)` (its input data), `score(config, version)` (a
registered model version on fixed evaluation data) and PRIMARY_METRIC; `own_data(config)` (the
keyword arguments of tasks/sources.open_source: the column mapping) when it reads your own data.
"""

import importlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

NAMES = ("word2vec", "seq2seq", "charlm", "fundamentals", "airline")
# other names of a pipeline, by what it does: the same module, config, MLflow experiment and
# registered model (`seqflow run forecast` is `seqflow run airline`)
ALIASES = {"forecast": "airline"}


def canonical(name: str) -> str:
    """A pipeline's name for an alias of it (forecast -> airline); other names unchanged."""
    return ALIASES.get(name, name)


@dataclass(frozen=True)
class Pipeline:
    name: str
    flow: Callable  # flow(config=...) -> MLflow run id
    fingerprint: Callable  # fingerprint(config) -> data fingerprint
    score: Callable  # score(config, version) -> primary metric of that model version
    metric: str
    direction: Literal["max", "min"]
    own_data: Callable | None = None  # own_data(config) -> open_source's mapping arguments

    def better(self, challenger: float, champion: float) -> bool:
        return challenger > champion if self.direction == "max" else challenger < champion


def get(name: str) -> Pipeline:
    name = canonical(name)
    if name not in NAMES:
        raise ValueError(f"unknown pipeline {name!r}; known: {', '.join(NAMES)}")
    m = importlib.import_module(f"flows.{name}")
    metric, direction = m.PRIMARY_METRIC
    own = getattr(m, "own_data", None)
    return Pipeline(name, getattr(m, name), m.fingerprint, m.score, metric, direction, own)


def check_source(name: str, config) -> None:
    """Your own data (data.source other than 'course'): read through `datasets` and every mapped
    column checked in every split, before any stage; a SourceError names the source and the fix."""
    data = getattr(config, "data", None)
    if data is None or not getattr(data, "own", False):
        return
    from tasks.sources import SourceError, open_source

    spec = get(name)
    if spec.own_data is None:
        raise SourceError(f"{name} runs on the course's data only: leave data.source at 'course'")
    module = importlib.import_module(f"flows.{spec.name}")
    check_own = getattr(module, "check_own", None)
    if check_own is not None:  # checks beyond the columns (a series: its spacing)
        check_own(config)
    else:
        own_incoming = getattr(module, "OWN_INCOMING", "source") == "source"
        open_source(data, **spec.own_data(config), pipeline=name if own_incoming else None)


def resolve(pipeline: str, config, profile: str | None, overrides: list[str] | None):
    """A flow's config: the one given, else `profile` (default parity) with `overrides`."""
    if config is not None:
        return config
    from flows.config import load_config

    return load_config(pipeline, profile or "parity", overrides or [])


def run_tags(data_fingerprint: str, **extra) -> dict:
    """Tags every pipeline run carries: its Prefect flow run and what data it trains on."""
    from prefect.runtime import flow_run

    return {"prefect_flow_run_id": flow_run.get_id() or "none",
            "data_fingerprint": data_fingerprint, **extra}  # fmt: skip


def _short(key: str, value) -> str:
    """`train.lr`, 0.0003 -> `lr3e-4`: a run-name part for one changed config value."""
    text = f"{value:g}".replace("e-0", "e-") if isinstance(value, float) else str(value)
    return (key.rsplit(".", 1)[-1] + text).replace(" ", "")[:24]


def run_identity(pipeline: str, config) -> tuple[str, dict]:
    """(run name, tags) telling runs apart: the values that differ from the profile's, a short
    hash of the whole config, the command that started it."""
    import hashlib
    import json
    import os
    import re

    from flows.config import ConfigError, flatten, load_config

    params = flatten(config)
    try:
        base = flatten(load_config(pipeline, config.profile))
    except ConfigError:
        base = {}
    changed = {k: v for k, v in params.items() if k != "profile" and base.get(k) != v}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()
    shown = [_short(k, v) for k, v in changed.items()][:4]
    name = "-".join([pipeline, config.profile, *shown, digest[:6]])
    name = re.sub(r"[^A-Za-z0-9_.=+-]", "", name)
    command = os.environ.get("SEQFLOW_COMMAND") or f"{pipeline}(config=...) from Python"
    tags = {"config_hash": digest[:16], "seqflow.command": command,
            "seqflow.overrides": json.dumps(changed, default=str) if changed else "none",
            "mlflow.source.name": command.split(" ")[0], "mlflow.source.type": "LOCAL"}  # fmt: skip
    return name, tags


# the columns each pipeline's ingest keeps of the course's data (MLflow's Datasets panel)
COURSE_SCHEMA = {
    "word2vec": {"id": "integer", "label": "integer", "tweet": "string"},
    "seq2seq": {"src": "string", "trg": "string"},
    "charlm": {"text": "string"},
    "airline": {"Month": "time", "Passengers": "number"},
}


def dataset_input(pipeline: str, config) -> dict | None:
    """{name, where, schema} of the data a config reads: the catalog's dataset, or your own
    (its file URI or Hub id and revision, and the mapped columns)."""
    from tasks.engine.catalog import DATASETS

    d = config.data
    if getattr(d, "own", False):
        from pathlib import Path

        from tasks.sources import locate, resolved_revision

        source = locate(d.source, d.config, d.revision)
        own = get(pipeline).own_data
        wanted = own(config)["wanted"] if own else {}
        schema = {c: next(iter(kinds)) for c, kinds in wanted.values()}
        if source.kind == "hub":
            where = {"hub": source.given, "config": d.config, "revision": resolved_revision(source)}
            return {"name": source.given, "where": where, "schema": schema}
        path = Path(source.name)
        return {"name": path.name, "where": {"uri": path.as_uri()}, "schema": schema}
    spec = DATASETS.get(getattr(d, "dataset", None) or "")
    if spec is None:
        return None
    file = spec.file(d.file) if getattr(d, "file", None) else spec.files[0]
    return {"name": spec.folder, "where": {"url": file.url}, "schema": COURSE_SCHEMA.get(pipeline)}


def data_line(pipeline: str, config) -> dict:
    """Tags naming your own data and its column mapping (none for the course's data): a model
    of other data is another line, whose scores the champion policy does not compare."""
    d = getattr(config, "data", None)
    if d is None or not getattr(d, "own", False) or get(pipeline).own_data is None:
        return {}
    import json

    wanted = get(pipeline).own_data(config)["wanted"]
    mapping = {k: c for k, (c, _) in wanted.items()}
    return {"data_source": d.source, "data_mapping": json.dumps(mapping, sort_keys=True)}


@contextmanager
def open_run(pipeline: str, config, tags: dict):
    """The pipeline's MLflow run (tracking.pipeline_run) with a name and tags that tell runs
    apart, its input data logged, the experiment described, and a note when an earlier
    finished run had the same config, data and code."""
    from flows.config import flatten
    from tasks.engine import tracking
    from tasks.engine.stage import run_logger

    name, extra = run_identity(pipeline, config)
    tags = tags | extra | data_line(pipeline, config)
    with tracking.pipeline_run(pipeline, config.profile, flatten(config), tags, name) as run_id:
        doc = (importlib.import_module(f"flows.{pipeline}").__doc__ or pipeline).strip()
        tracking.describe_experiment(pipeline, doc)
        if (data := dataset_input(pipeline, config)) is not None:
            tracking.log_dataset(run_id, data["name"], data["where"], tags["data_fingerprint"],
                                 data["schema"])  # fmt: skip
        run = tracking.get_run(run_id)
        if same := tracking.identical_runs(pipeline, run_id, run.data.tags):
            first = same[-1]
            tracking.set_tags(run_id, {"identical_to": first.info.run_id})
            run_logger().info("identical to run %s (%s): same config, data and code",
                              first.info.run_name, first.info.run_id)  # fmt: skip
        yield run_id
