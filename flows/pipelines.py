"""What the CLI, retraining and deployments need to know of each pipeline.

A new pipeline plugs in with one entry here: its flow, how to fingerprint its input data, how
to score a registered model version on fixed evaluation data, and its primary metric.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


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
    if name == "word2vec":
        from flows import word2vec as w

        metric, direction = w.PRIMARY_METRIC
        return Pipeline(name, w.word2vec, w.fingerprint, w.score, metric, direction)
    if name == "seq2seq":
        from flows import seq2seq as s

        metric, direction = s.PRIMARY_METRIC
        return Pipeline(name, s.seq2seq, s.fingerprint, s.score, metric, direction)
    if name == "charlm":
        from flows import charlm as c

        metric, direction = c.PRIMARY_METRIC
        return Pipeline(name, c.charlm, c.fingerprint, c.score, metric, direction)
    if name == "fundamentals":
        from flows import fundamentals as f

        metric, direction = f.PRIMARY_METRIC
        return Pipeline(name, f.fundamentals, f.fingerprint, f.score, metric, direction)
    if name == "airline":
        from flows import airline as a

        metric, direction = a.PRIMARY_METRIC
        return Pipeline(name, a.airline, a.fingerprint, a.score, metric, direction)
    raise ValueError(f"unknown pipeline {name!r}; known: {', '.join(NAMES)}")


NAMES = ("word2vec", "seq2seq", "charlm", "fundamentals", "airline")
