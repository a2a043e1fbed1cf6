"""`fit`: train a recipe by a plan — in this process (tasks/runtime/loop.py) or on DDP ranks
(tasks/runtime/ddp.py) — with resume, best-checkpoint selection and the run's summary."""

from collections.abc import Callable
from pathlib import Path

from tasks.engine.stage import run_logger
from tasks.runtime import checkpoint, ddp, signals
from tasks.runtime.loop import Fitted, Plan, Recipe, resume, run_epochs


def fit(
    build: Callable[[], Recipe] | Recipe,
    plan: Plan,
    checkpoints: Path | None = None,
    run_id: str | None = None,
    meta: dict | None = None,
    monitor: Callable[[int, dict], None] | None = None,
) -> tuple[Recipe, Fitted]:
    """Train `build()`'s recipe by `plan`. With a `checkpoints` folder, resume after the
    newest checkpoint there and write one per `plan.checkpoint_every` epochs; per-epoch metrics
    go to MLflow run `run_id`. `meta` is stored in each checkpoint (`meta["run_ids"]`: the
    MLflow runs this training belongs to, marked KILLED by whichever run resumes it).
    With plan.nproc > 1, `build` must be picklable: each DDP rank builds its own recipe.
    `monitor(epoch, row)` sees each epoch's metrics (one process only); what it raises stops
    training at that epoch's end (a pruned tuning trial).
    Returns (the recipe, its model trained; with `select`, the best epoch's weights)."""
    recipe = build() if callable(build) and not isinstance(build, Recipe) else build
    fitted, state = resume(recipe, plan, checkpoints)
    if state is not None:
        run_logger().info("%s: resuming after epoch %d from %s", recipe.name,
                          fitted.resumed_epochs, fitted.checkpoint)  # fmt: skip
        run_ids = state.get("meta", {}).get("run_ids") or [""]  # the first: the run that began
        if run_id:
            from tasks.engine import tracking

            tracking.set_tags(run_id, {"resumed_from_epoch": fitted.resumed_epochs,
                                       "resumed_from_checkpoint": fitted.resumed_from,
                                       "resumed_from_run": run_ids[0]})  # fmt: skip
            # the runs a kill left RUNNING: KILLED
            tracking.close_interrupted([r for r in run_ids if r and r != run_id], run_id)
    with signals.training():
        if plan.nproc > 1 and fitted.resumed_epochs < plan.epochs:
            if monitor is not None:
                raise ValueError("an epoch monitor (tuning) needs train.nproc = 1")
            fitted = ddp.launch(build, recipe, plan, checkpoints, run_id, meta)
        else:
            run_epochs(recipe, plan, checkpoints, run_id, meta, fitted, monitor=monitor)
    if recipe.select and fitted.best_epoch is not None and recipe.model is not None:
        best = checkpoint.load_best(checkpoints) if checkpoints is not None else None
        state = best["model"] if best is not None else fitted.best_state
        if state is not None:
            recipe.model.load_state_dict(state)
    _summary(recipe, fitted, run_id)
    return recipe, fitted


def _summary(recipe: Recipe, fitted: Fitted, run_id: str | None) -> None:
    if not run_id or not fitted.history:
        return
    from tasks.engine import tracking

    final = {"final_train_loss": fitted.history[-1]["train_loss"],
             "train_seconds": fitted.seconds, f"{recipe.unit}_per_sec": fitted.per_sec}  # fmt: skip
    if fitted.best_epoch is not None:
        final["best_epoch"] = fitted.best_epoch + 1
        final[f"best_{recipe.select[0]}"] = fitted.best_value
    try:
        tracking.log_metrics(run_id, final)
        tags = {"device": fitted.device, "checkpoint": fitted.checkpoint}
        tracking.set_tags(run_id, {k: v for k, v in tags.items() if v})
    except Exception as err:
        run_logger().warning("MLflow logging failed (%s); the checkpoint keeps the model", err)
