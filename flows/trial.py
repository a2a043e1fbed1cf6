"""One tuning trial in its own process: `python -m flows.trial SPEC_JSON` (flows/tune.py).

The trial's params are in the study already (sampled by the study's process). This process
builds the config, opens the trial's MLflow child run, runs the pipeline's `tune_trial`
(validation split only) with each epoch's value reported to Optuna, and tells the study the
outcome: complete (the last value), pruned (stopped at an epoch boundary) or failed (the reason
kept as the trial's `fail_reason` and on the MLflow run). Its last stdout line is the outcome as
JSON, for the study's log.
"""

import importlib
import json
import os
import sys
import warnings


def monitor(trial, key: str, run_id: str):
    """The runtime's epoch hook: report `key` when the epoch has it; pruned -> TrialPruned."""
    import optuna

    from tasks.engine import tracking

    def check(epoch: int, row: dict) -> None:
        if key not in row:
            return
        trial.report(row[key], epoch)
        if trial.should_prune():
            tracking.set_tags(run_id, {"trial.pruned_at_epoch": epoch + 1})
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}: {key} {row[key]:.4g}")

    return check


def main(spec: dict) -> dict:
    import optuna
    from optuna.trial import TrialState

    from flows.config import flatten, load_config
    from flows.tune import make_pruner, storage
    from tasks.engine import tracking
    from tasks.engine.settings import use_mirror

    use_mirror(spec.get("mirror"))
    if spec.get("threads"):  # K trials side by side share the cores instead of fighting
        import torch

        torch.set_num_threads(spec["threads"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=spec["study"], storage=storage())
    trial = optuna.trial.Trial(study, spec["trial_id"])
    number, key = spec["number"], spec["metric"]
    trial.set_user_attr("pid", os.getpid())
    params = trial.params
    pipeline = spec["pipeline"]
    module = importlib.import_module(f"flows.{pipeline}")
    tags = {"optuna.study": spec["study"], "optuna.trial": number, "pipeline.tuned": pipeline,
            "mlflow.note.content": f"trial {number} of study {spec['study']}: "
            + ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                        for k, v in params.items())}  # fmt: skip
    outcome = {"state": "fail", "number": number, "params": params}
    try:
        sets = [f"{k}={json.dumps(v)}" for k, v in params.items()]
        config = load_config(pipeline, spec["profile"], [*spec["overrides"], *sets])
        # no pruning in the first quarter of the epochs: early losses say little yet
        epochs = getattr(module, "trial_epochs", lambda c: c.train.epochs)(config)
        study.pruner = make_pruner(spec["pruner"], spec["startup"], max(1, epochs // 4))
        with tracking.child_run(spec["parent"], f"{pipeline}-tune", f"trial-{number}",
                                flatten(config), tags) as run_id:  # fmt: skip
            trial.set_user_attr("mlflow_run", run_id)
            outcome["run_id"] = run_id
            try:
                value = module.tune_trial(config, run_id, monitor(trial, key, run_id))
            except optuna.TrialPruned as pruned:
                tracking.set_tags(run_id, {"trial.state": "pruned"})
                study.tell(number, state=TrialState.PRUNED)
                return outcome | {"state": "pruned", "reason": str(pruned)}
            tracking.set_tags(run_id, {"trial.state": "complete"})
        study.tell(number, value)
        return outcome | {"state": "complete", key: value}
    except BaseException as err:  # recorded as failed, with its reason; the study goes on
        reason = f"{type(err).__name__}: {err}"[:1000]
        trial.set_user_attr("fail_reason", reason)
        if isinstance(err, KeyboardInterrupt):
            trial.set_user_attr("interrupted", True)
        if run_id := outcome.get("run_id"):
            tracking.set_tags(run_id, {"trial.state": "failed"})
        study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        if isinstance(err, KeyboardInterrupt):
            raise
        return outcome | {"reason": reason}


if __name__ == "__main__":
    warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method")
    result = main(json.loads(sys.argv[1]))
    print(json.dumps(result, default=str), flush=True)
    sys.exit(0)
