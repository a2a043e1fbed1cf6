"""The champion policy that `run` and `retrain` share: which registered version serves.

A new version becomes `champion` when there is none, or when it beats the current champion on
the pipeline's primary metric, both scored on this run's evaluation data. `promote=True/False`
(`--promote` / `--no-promote`) forces the choice. Never automatically: a version whose parity
check failed, or a `quick` version over a champion of another profile. One decision at a time
per pipeline (a file lock), and the run's tags say what was decided (`champion.line`).
"""

from contextlib import contextmanager
from contextvars import ContextVar

from filelock import FileLock, Timeout

from flows import pipelines
from tasks.engine import tracking
from tasks.engine.settings import data_dir
from tasks.engine.stage import run_logger

QUICK = "quick"
CALLER: ContextVar[str] = ContextVar("champion_caller", default="seqflow run")  # or "retrain"


HELD: ContextVar[frozenset] = ContextVar("champion_locks_held", default=frozenset())


def lock(pipeline: str) -> FileLock:
    folder = data_dir() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    return FileLock(folder / f"{pipeline}.champion.lock")


@contextmanager
def one_at_a_time(pipeline: str, waiting: str):
    """The pipeline's decision lock, taken once per context: a retrain holds it from its
    check to its promotion, and the `decide` inside it (same context) does not take it again
    (a second FileLock on the same file would wait for itself). `waiting`: logged when another
    process holds it."""
    if pipeline in HELD.get():
        yield
        return
    held = lock(pipeline)
    try:
        held.acquire(timeout=0)
    except Timeout:
        run_logger().info("%s", waiting)
        held.acquire()
    token = HELD.set(HELD.get() | {pipeline})
    try:
        yield
    finally:
        HELD.reset(token)
        held.release()


def primary(pipeline: str, config) -> tuple[str, str]:
    """(metric, direction) a decision compares: the pipeline's PRIMARY_METRIC, or what its
    module's `primary_metric(config)` says for this config (word2vec on a corpus without
    labels has no downstream_f1: final_train_loss, min)."""
    import importlib

    spec = pipelines.get(pipeline)
    pick = getattr(importlib.import_module(f"flows.{pipeline}"), "primary_metric", None)
    return pick(config) if pick is not None else (spec.metric, spec.direction)


def _data_of(run) -> str:
    tags = run.data.tags
    if "data_source" not in tags and (parent := tags.get("mlflow.parentRunId")):
        tags = tracking.get_run(parent).data.tags  # a variant (charlm child run): its pipeline run
    if "data_source" not in tags:
        return "the course's data"
    return f"{tags['data_source']} ({tags.get('data_mapping', '')})"


def other_data(run, champion_run) -> str | None:
    """Why a challenger's data is not the champion's (source or column mapping), else None."""
    mine, theirs = _data_of(run), _data_of(champion_run)
    return None if mine == theirs else f"trained on {mine}, the champion on {theirs}"


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def describe_version(pipeline: str, version, run, profile: str, metric: str) -> None:
    """A version's description and tags (from its MLflow `run`): profile, primary metric,
    data, commit, parity."""
    run_id, value = run.info.run_id, run.data.metrics.get(metric)
    failures = tracking.counts(run).get("parity_failures")
    parity = "not checked" if failures is None else ("fail" if failures else "pass")
    tags = {"profile": profile, "metric": metric, metric: _fmt(value), "parity": parity,
            "data_fingerprint": run.data.tags.get("data_fingerprint", "-"),
            "git_commit": run.data.tags.get("git_commit", "unknown"), "run_id": run_id,
            "run_name": run.info.run_name}  # fmt: skip
    text = (f"{pipeline} `{profile}` run {run.info.run_name} ({run_id}): {metric} "
            f"{_fmt(value)}, parity {parity}, data {tags['data_fingerprint'][:12]}, "
            f"commit {tags['git_commit'][:10]}")  # fmt: skip
    tracking.describe_version(pipeline, version, text, tags)


def decide(pipeline: str, config, run_id: str, version, promote: bool | None = None) -> dict:
    """Apply the policy to registered `version` of run `run_id`; returns the decision
    ({decision, line, version, champion_version, metric, scores}) and tags the run with it."""
    spec = pipelines.get(pipeline)
    metric, direction = primary(pipeline, config)
    version = int(version)
    run = tracking.get_run(run_id)
    describe_version(pipeline, version, run, config.profile, metric)
    new_value = run.data.metrics.get(metric)
    parity_failed = bool(tracking.counts(run).get("parity_failures"))
    waiting = f"another retrain or champion decision of {pipeline} is running; waiting"
    with one_at_a_time(pipeline, waiting):
        champ = tracking.champion(pipeline)
        old = int(champ.version) if champ is not None else None
        out = {"version": version, "champion_version": old, "metric": metric}
        if champ is not None and old == version:
            return _tagged(run_id, out | {"decision": "already champion",
                                          "line": f"version {version} is champion"})  # fmt: skip
        champ_profile = tracking.version_profile(pipeline, old) if old else None
        other = other_data(run, tracking.get_run(champ.run_id)) if champ is not None else None
        new = old_score = None
        if promote is None and old and not parity_failed and not other:
            if config.profile != QUICK or champ_profile == QUICK:
                new = spec.score(config, version)
                old_score = spec.score(config, old)
                tracking.set_version_score(pipeline, version, metric, new)
                tracking.set_version_score(pipeline, old, metric, old_score)
                out |= {"challenger_score": new, "champion_score": old_score}
        stays = f"version {version} registered; champion stays version {old}"
        if promote is False:
            decision, why = "kept champion", "--no-promote"
        elif promote is True:
            decision, why = "promoted", "forced by --promote"
        elif parity_failed:
            decision, why = "kept champion", "its parity check failed; not promoted"
        elif old is None:
            decision, why = "first model: champion", f"first model; {metric} {_fmt(new_value)}"
        elif other:
            decision = "kept champion"
            why = f"{other}: their scores do not compare; --promote serves this one"
        elif config.profile == QUICK and champ_profile != QUICK:
            decision = "kept champion"
            why = f"a quick run never replaces a {champ_profile or 'non-quick'} champion"
        elif new > old_score if direction == "max" else new < old_score:
            decision, why = "promoted", f"{metric} {_fmt(new)} vs {_fmt(old_score)}"
        else:
            decision = "kept champion"
            why = f"{metric} {_fmt(new)} does not beat {_fmt(old_score)}"
        if decision == "kept champion" and old is None:
            decision = "not promoted"
        if decision != "promoted" and not decision.startswith("first"):
            none = f"version {version} registered; no champion"
            line = f"{stays} ({why})" if old else f"{none} ({why})"
        else:
            reason = f"{'first model' if old is None else CALLER.get()}: {why}"
            tracking.promote(pipeline, version, reason, metric=metric)
            line = f"version {version} is now champion ({why})"
        return _tagged(run_id, out | {"decision": decision, "line": line})


def _tagged(run_id: str, out: dict) -> dict:
    tags = {"champion.decision": out["decision"], "champion.line": out["line"],
            "champion.before": out["champion_version"] or "none"}  # fmt: skip
    tags |= {f"champion.{k}": f"{out[k]!r}" for k in ("challenger_score", "champion_score")
             if k in out}  # fmt: skip
    tracking.set_tags(run_id, tags)
    run_logger().info("%s", out["line"])
    return out


def finish(pipeline: str, config, run_id: str, metrics: dict, record: str, promote) -> None:
    """A pipeline run's last step: the run record as the MLflow run's description, then the
    champion decision for the version it registered (if any)."""
    tracking.set_tags(run_id, {"mlflow.note.content": record})
    if (version := metrics.get("model_version")) is not None:
        tracking.set_tags(run_id, {"registered_model": f"{pipeline}/{version}"})  # charlm: child
        decide(pipeline, config, run_id, version, promote)
