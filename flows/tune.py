"""`seqflow tune`: an Optuna study over a pipeline's config, each trial in its own process.

space checked (flows/space.py) -> study (TPE, seeded; SQLite next to the MLflow store)
  -> the pipeline's stages once (trials then read them from the stage cache)
  -> `parallel` trials at a time on the task runner, each `python -m flows.trial` in its own
     process: the pipeline's `tune_trial` on its validation split, each epoch's value reported
     to Optuna, whose pruner may stop it at an epoch boundary
  -> the parent MLflow run (experiment `<pipeline>-tune`, one child run per trial): the best
     trial's params and value, parallel-coordinates and history plots, the best trial as a
     profile file; with `final`, that profile run once by the pipeline (its test score)
"""

import hashlib
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import dashboard
from flows.config import ConfigError, flatten, load_config
from flows.space import default_space, distributions
from tasks.engine import tracking
from tasks.engine.settings import data_dir
from tasks.engine.stage import run_logger

# pipelines with a `tune_trial` on a validation split (flows/<pipeline>.py)
TUNABLE = (
    "word2vec",
    "seq2seq",
    "charlm",
    "fundamentals",
    "airline",
)


class TuneError(ValueError):
    """A study that cannot start or resume as asked; the message says what to do."""


def storage_url() -> str:
    """The studies' SQLite file, next to the MLflow store."""
    return f"sqlite:///{data_dir() / 'optuna.db'}"


def storage():
    from optuna.storages import RDBStorage

    data_dir().mkdir(parents=True, exist_ok=True)  # several processes write it: wait on locks
    return RDBStorage(storage_url(), engine_kwargs={"connect_args": {"timeout": 120}})


def make_pruner(kind: str, startup: int, warmup: int = 1):
    from optuna.pruners import MedianPruner, NopPruner

    if kind == "none":
        return NopPruner()
    return MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)


def study_name(pipeline: str, profile: str, overrides: list[str], space: dict) -> str:
    """<pipeline>-<profile>-<hash of the space and the overrides>: the same search resumes."""
    what = json.dumps({"space": space, "set": overrides}, sort_keys=True, default=str)
    return f"{pipeline}-{profile}-{hashlib.sha256(what.encode()).hexdigest()[:8]}"


def module_of(pipeline: str):
    if pipeline not in TUNABLE:
        raise TuneError(f"tuning is wired for {', '.join(TUNABLE)}; {pipeline} has no "
                        "validation-split trial yet")  # fmt: skip
    return importlib.import_module(f"flows.{pipeline}")


def counted(trial) -> bool:
    """A trial that counts toward --trials: finished, and not cut off by an interruption (those
    are queued again with their params)."""
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return trial.state in done and not trial.user_attrs.get("interrupted")


def _alive(pid) -> bool:
    """Whether trial process `pid` still runs: not gone, not a zombie nobody reaped (a killed
    study's orphans, where PID 1 does not reap), not a new process that reuses the number."""
    try:
        os.kill(int(pid), 0)
    except (OSError, TypeError, ValueError):
        return False
    proc = Path(f"/proc/{int(pid)}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        command = (proc / "cmdline").read_bytes()
    except OSError:  # no /proc (macOS): the signal answered
        return True
    return state != "Z" and b"flows.trial" in command


def profile_point(config, dists: dict) -> dict | None:
    """The profile's own values of the searched keys, when the space holds them all: the
    study's first trial, so every study is measured against the point it started from."""
    values = flatten(config)
    point = {k: values.get(k) for k in dists}
    try:
        inside = all(d._contains(d.to_internal_repr(point[k])) for k, d in dists.items())
    except (ValueError, TypeError):
        return None
    return point if inside else None


def repeat_of(study, trial):
    """A complete trial with exactly `trial`'s params (a small or discrete space), or None."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.number != trial.number and t.params == trial.params:
            return t
    return None


def reclaim(study) -> list[int]:
    """Trials a stopped study left behind: one still RUNNING is refused while its process
    lives, else marked FAIL (interrupted) with its MLflow run KILLED; every interrupted trial
    (those too that Ctrl-C stopped) not yet retried has its params queued to run again."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = t.user_attrs.get("pid")
        if pid and _alive(pid):
            raise TuneError(f"trial {t.number} of study {study.study_name} is still running "
                            f"(process {pid}): wait for it or stop it, then --resume")  # fmt: skip
        study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
        study._storage.set_trial_user_attr(t._trial_id, "fail_reason", "interrupted")
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        if run := t.user_attrs.get("mlflow_run"):
            tracking.end_run(run, "KILLED", "its study was interrupted; resumed with --resume")
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    again = [t for t in trials if t.user_attrs.get("interrupted") and t.number not in retried]
    for t in again:
        if t.params:
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
    return [t.number for t in again]


def open_study(name: str, direction: str, seed: int, resume: bool, trials: int, attrs: dict):
    """The study `name`: created, or with `resume` loaded (and its interrupted trials
    reclaimed). The sampler's seed moves on with each trial already there, so a resumed study
    draws new points instead of the first ones again."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = storage()
    known = {s.study_name: s for s in optuna.get_all_study_summaries(store)}
    if name in known and not resume:
        n = known[name].n_trials
        raise TuneError(f"study {name} already has {n} trial(s): add --resume to continue it, "
                        "or --study NAME to start another")  # fmt: skip
    if name not in known and resume:
        raise TuneError(f"--resume: no study {name} in {storage_url()} (studies there: "
                        f"{', '.join(known) or 'none'})")  # fmt: skip
    done = known[name].n_trials if name in known else 0
    sampler = optuna.samplers.TPESampler(seed=seed + done,
                                         n_startup_trials=min(10, max(2, trials // 3)))  # fmt: skip
    study = optuna.create_study(study_name=name, storage=store, direction=direction,
                                sampler=sampler, load_if_exists=resume)  # fmt: skip
    if name not in known:
        for k, v in attrs.items():
            study.set_user_attr(k, v)
    return study


def parent_run(study, pipeline: str, config, settings: dict) -> str:
    """The study's MLflow run: made once, reopened by --resume."""
    if run_id := study.user_attrs.get("mlflow_parent"):
        try:
            tracking.client().update_run(run_id, status="RUNNING")
            return run_id
        except Exception:  # another MLflow store: a new parent there
            pass
    tags = {"pipeline.tuned": pipeline, "profile": config.profile, "optuna.study": study.study_name,
            "optuna.storage": storage_url(), "git_commit": tracking.git_commit(),
            "seqflow.command": os.environ.get("SEQFLOW_COMMAND", "tune(...) from Python"),
            "mlflow.note.content": f"Optuna study `{study.study_name}` over {pipeline} "
            f"({config.profile}): {settings['trials']} trials, objective {settings['objective']} "
            "on the validation split"}  # fmt: skip
    params = {**flatten(config), **{f"tune.{k}": v for k, v in settings.items()}}
    run_id = tracking.start_run(f"{pipeline}-tune", params, tags, run_name=study.study_name)
    study.set_user_attr("mlflow_parent", run_id)
    return run_id


@task(name="trial", cache_policy=NO_CACHE, task_run_name="trial-{spec[number]}")
def run_trial(spec: dict) -> dict:
    """One trial in its own process (flows/trial.py); a process that dies without telling
    Optuna leaves its trial FAILED here, with the end of its log as the reason."""
    import optuna
    from optuna.trial import TrialState

    log = Path(spec["log"])
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w", encoding="utf-8") as out:
        code = subprocess.call([sys.executable, "-m", "flows.trial", json.dumps(spec)],
                               stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    text = log.read_text(encoding="utf-8", errors="replace")
    lines = [ln for ln in text.splitlines() if ln.startswith('{"state"')]
    if lines:
        result = json.loads(lines[-1])
    else:
        tail = " | ".join(text.strip().splitlines()[-3:])[-500:]
        result = {"state": "fail", "reason": f"trial process exited {code}: {tail}"}
        study = optuna.load_study(study_name=spec["study"], storage=storage())
        frozen = study._storage.get_trial(spec["trial_id"])
        if frozen.state == TrialState.RUNNING:
            study._storage.set_trial_user_attr(spec["trial_id"], "fail_reason", result["reason"])
            study.tell(spec["number"], state=TrialState.FAIL, skip_if_finished=True)
    shown = {k: v for k, v in result.items() if k != "state"}
    run_logger().info("trial %d %s %s", spec["number"], result["state"], shown)
    return result


def _plots(study, run_id: str) -> list[str]:
    """Optuna's parallel-coordinates and optimisation-history plots (matplotlib) on the run."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    logged = []
    for name, plot in (("parallel_coordinates.png", ov.plot_parallel_coordinate),
                       ("optimization_history.png", ov.plot_optimization_history)):  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna marks its matplotlib plots experimental
            ax = plot(study)
        fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        fig.set_size_inches(10, 5)
        fig.tight_layout()
        tracking.log_figure(run_id, fig, name)
        plt.close(fig)
        logged.append(name)
    return logged


def profile_file(study, pipeline: str, profile: str, base: dict, metric: str) -> dict:
    """The best trial as a profile file's content (`seqflow run --profile-file`)."""
    best = study.best_trial
    return {"pipeline": pipeline, "profile": profile, "set": {**base, **best.params},
            "study": study.study_name, "trial": best.number,
            "validation": {metric: best.value}}  # fmt: skip


def load_profile_file(path: str | Path, pipeline: str | None = None) -> tuple[str, str, list]:
    """(pipeline, profile, --set overrides) of a profile file that `seqflow tune` wrote (JSON
    or YAML: pipeline, profile, set: {key: value})."""
    import yaml

    path = Path(path)
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"--profile-file {path}: cannot read it ({err})") from None
    if not isinstance(spec, dict) or not {"pipeline", "profile"} <= set(spec):
        raise ConfigError(f"--profile-file {path}: expected pipeline, profile and set "
                          "(a file `seqflow tune` wrote)")  # fmt: skip
    if pipeline is not None and spec["pipeline"] != pipeline:
        raise ConfigError(f"--profile-file {path} is for {spec['pipeline']}, not {pipeline}")
    sets = [f"{k}={json.dumps(v)}" for k, v in (spec.get("set") or {}).items()]
    return spec["pipeline"], spec["profile"], sets


def _values(overrides: list[str]) -> dict:
    from flows.config import parse_override

    return {".".join(k): v for k, v in map(parse_override, overrides)}


@flow(name="tune", flow_run_name=dashboard.tune_run_name)
def tune(
    pipeline: str,
    profile: str = "quick",
    trials: int = 10,
    parallel: int = 1,
    space: dict | None = None,
    overrides: list[str] | None = None,
    resume: bool = False,
    study: str | None = None,
    final: bool = True,
    pruner: str = "median",
    prune_after: int | None = None,
    seed: int = 2023,
) -> dict:
    """An Optuna study over `pipeline`'s `profile` (+ overrides): `trials` trials of `space`
    (default: the pipeline's TUNE_SPACE), `parallel` at a time, each in its own process; the
    first trial is the profile's own point when the space holds it. The pruner compares a
    trial with the others once `prune_after` trials have finished (default: a quarter of
    `trials`, 1 to 5).
    Returns the study's outcome (counts, best value and params, the profile file, run ids)."""
    from flows.pipelines import check_source

    overrides = [*(overrides or []), "train.nproc=1"]
    module = module_of(pipeline)
    config = load_config(pipeline, profile, overrides)
    space = space or default_space(pipeline, config)
    dists = distributions(pipeline, profile, overrides, space)
    check_source(pipeline, config)
    metric, direction = module.TUNE_METRIC
    name = study or study_name(pipeline, profile, overrides, space)
    startup = prune_after if prune_after is not None else min(5, max(1, trials // 4))
    settings = {"trials": trials, "parallel": parallel, "objective": metric, "pruner": pruner,
                "prune_after": startup, "seed": seed, "space": json.dumps(space)}  # fmt: skip
    st = open_study(name, "minimize" if direction == "min" else "maximize", seed, resume, trials,
                    {"pipeline": pipeline, "profile": profile, "overrides": overrides})  # fmt: skip
    again = reclaim(st) if resume else []
    if not st.trials and (start := profile_point(config, dists)):
        st.enqueue_trial(start, user_attrs={"start": f"{profile}'s own values"})
    parent = parent_run(st, pipeline, config, settings)
    log = run_logger()
    if again:
        log.info("resumed %s: interrupted trial(s) %s queued again", name, again)
    from prefect.futures import wait

    base = {"pipeline": pipeline, "profile": profile, "overrides": overrides, "study": name,
            "parent": parent, "metric": metric, "pruner": pruner, "startup": startup,
            "mirror": os.environ.get("SEQFLOW_MIRROR"),
            "threads": max(1, (os.cpu_count() or 1) // parallel)}  # fmt: skip
    logs = data_dir() / "tune" / name
    running = {}
    started = time.time()
    try:
        stages = task(name="stages", cache_policy=NO_CACHE)(module.tune_stages)
        stages(config)  # once, before the trials: they read the stage cache
        while True:
            done = sum(counted(t) for t in st.get_trials(deepcopy=False))
            while len(running) < parallel and done + len(running) < trials:
                t = st.ask(dists)
                if same := repeat_of(st, t):  # TPE may draw a finished point again: not trained
                    log.info("trial %d repeats trial %d's params: its value, not trained again",
                             t.number, same.number)  # fmt: skip
                    t.set_user_attr("repeat_of", same.number)
                    st.tell(t, same.value)
                    done += 1
                    continue
                spec = base | {"trial_id": t._trial_id, "number": t.number,
                               "log": str(logs / f"trial-{t.number}.log")}  # fmt: skip
                running[run_trial.submit(spec)] = t.number
            if not running:
                break
            finished = wait(list(running), timeout=2).done
            for f in finished:
                running.pop(f)
                f.result(raise_on_failure=False)
        return report(st, pipeline, profile, parent, metric, overrides, final,
                      time.time() - started)  # fmt: skip
    except BaseException as err:
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        tracking.end_run(parent, status, f"{type(err).__name__}: {err}; resume with --resume")
        raise


def report(st, pipeline: str, profile: str, parent: str, metric: str, overrides: list[str],
           final: bool, seconds: float) -> dict:  # fmt: skip
    """The study on its parent run; the best trial as a profile file, run once with `final`."""
    from optuna.trial import TrialState

    from flows.pipelines import get

    all_trials = st.get_trials(deepcopy=False)
    states = {s.name.lower(): sum(t.state == s and counted(t) for t in all_trials)
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}  # fmt: skip
    out = {"study": st.study_name, "parent_run": parent, "trials": states,
           "seconds": round(seconds, 1)}  # fmt: skip
    tracking.log_metrics(parent, {f"trials_{k}": v for k, v in states.items()})
    rows = [(t.number, {f"trial_{metric}": t.value}) for t in all_trials
            if t.state == TrialState.COMPLETE]  # fmt: skip
    if rows:
        tracking.log_steps(parent, rows)
    if not states["complete"]:
        tracking.set_tags(parent, {"tune.best": "none: no trial completed"})
        tracking.end_run(parent, "FINISHED")
        return out | {"best": None}
    best = st.best_trial
    profile_spec = profile_file(st, pipeline, profile, _values(overrides[:-1]), metric)
    path = data_dir() / "tune" / f"{st.study_name}.profile.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(profile_spec, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    tracking.log_json(parent, profile_spec, "profile.json")
    tags = {"best_trial": best.number, "profile_file": str(path),
            "best_trial_run": best.user_attrs.get("mlflow_run", "")}  # fmt: skip
    tracking.set_tags(parent, tags | {f"best.{k}": v for k, v in best.params.items()})
    tracking.log_metrics(parent, {f"best_{metric}": best.value})
    out |= {"best": {"trial": best.number, metric: best.value, "params": best.params},
            "profile_file": str(path), "plots": _plots(st, parent)}  # fmt: skip
    if final:
        spec = get(pipeline)
        _, prof, sets = load_profile_file(path, pipeline)
        final_config = load_config(pipeline, prof, sets)
        final_run = spec.flow(config=final_config)
        values = tracking.values(tracking.get_run(final_run))
        test = values.get(spec.metric)
        if test is None and (kinds := getattr(final_config.train, "kinds", None)):
            test = values.get(f"{spec.metric}.{kinds[0]}")  # several kinds: the tuned one's
        tracking.set_tags(parent, {"final_run": final_run})
        if test is not None:
            tracking.log_metrics(parent, {f"best_trial_{spec.metric}": test})
        out |= {"final_run": final_run, f"best_trial_{spec.metric}": test}
    tracking.end_run(parent, "FINISHED")
    return out
