"""What the CLI, retraining and deployments need to know of each pipeline.

A new pipeline plugs in with one entry in MODULES: a module `flows/<name>.py` holding the flow
`<name>(config=...)`, `fingerprint(config)` (its input data), `score(config, version)` (a
registered model version on fixed evaluation data) and PRIMARY_METRIC.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

NAMES = ("word2vec", "seq2seq", "charlm", "fundamentals", "airline")


@dataclass(frozen=True)
class Pipeline:
    name: str
    flow: Callable  # flow(config=...) -> MLflow run id
    fingerprint: Callable  # fingerprint(config) -> data fingerprint
    score: Callable  # score(config, version) -> primary metric of that model version
    metric: str
    direction: Literal["max", "min"]

    def better(self, challenger: float, champion: float) -> bool:
        return challenger > champion if self.direction == "max" else challenger < champion


def get(name: str) -> Pipeline:
    if name not in NAMES:
        raise ValueError(f"unknown pipeline {name!r}; known: {', '.join(NAMES)}")
    m = importlib.import_module(f"flows.{name}")
    metric, direction = m.PRIMARY_METRIC
    return Pipeline(name, getattr(m, name), m.fingerprint, m.score, metric, direction)


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
