"""The training loop every pipeline runs on.

A pipeline writes a `Recipe` (what to train: model, optimizer, batches, loss, evaluation);
`fit(recipe, plan)` owns how: the epoch/step loop and its progress bar, per-epoch metrics to
MLflow (`train_loss`, the recipe's eval metrics, `epoch_<unit>_per_sec`), atomic checkpoints
with RNG states and resume, the NaN/inf stop, SIGINT/SIGTERM, device and precision, DDP
(`plan.nproc`, see tasks/runtime/ddp.py) and best-checkpoint selection.
"""

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from pkgutil import resolve_name

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn
from tqdm.auto import tqdm

from tasks.engine.accel import autocast
from tasks.engine.stage import run_logger
from tasks.runtime import checkpoint, signals
from tasks.runtime.faults import check_finite


def pick_device(name: str = "auto") -> torch.device:
    """cuda, then mps, then cpu; or the one named."""
    if name == "auto":
        mps = torch.backends.mps.is_available()
        name = "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    return torch.device(name)


class Recipe:
    """What a pipeline supplies. Set `model` and `optimizer` (or override `train_step` for a
    model that is not an nn.Module), and write `batches`, `loss` and, if it has one,
    `evaluate`. Generators the batches draw from go in `state_dict` so a resume continues
    their streams."""

    name = "model"  # shown in logs and errors
    unit = "items"  # what `loss` counts: throughput is <unit>/s
    report = "item"  # epoch train_loss: mean over items ("item") or over batches ("batch")
    select: tuple[str, str] | None = None  # (eval metric, "min"|"max"): keep best.pt
    clip: float | None = None  # gradient-norm clipping
    epoch_loss: float | None = None  # the epoch's train_loss, set before `evaluate`
    model: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    scheduler = None  # stepped after every optimizer step

    def batches(self, epoch: int) -> Iterable:
        """The epoch's (global) batches, in order."""
        raise NotImplementedError

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, int]:
        """(mean loss over the batch, how many items it averages)."""
        raise NotImplementedError

    def shard(self, batch, rank: int, world: int):
        """Rank `rank`'s part of a global batch (DDP): a contiguous slice."""
        n = len(batch)
        return batch[n * rank // world : n * (rank + 1) // world]

    def start_epoch(self, epoch: int) -> None:
        """Called before the epoch's first batch."""

    def evaluate(self, epoch: int) -> dict[str, float]:
        """Named metrics after the epoch ({} when none are due)."""
        return {}

    def state_dict(self) -> dict:
        """Extra state a resume needs (the batches' generators); weights-only types."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""

    def count(self, batch) -> int:
        """Items `loss` averages over in `batch` (known before the step, for DDP's scale)."""
        return len(batch)

    def train_step(self, compute, batch, scale: float) -> tuple[torch.Tensor, int]:
        """One optimizer step; returns (loss, items) before the update. `compute(batch)` is
        `loss` on this process's model (DDP-wrapped on a rank); `scale` turns the local mean
        into this rank's share of the global mean (1 in one process)."""
        loss, n = compute(batch)
        self.optimizer.zero_grad(set_to_none=True)
        (loss * scale if scale != 1 else loss).backward()
        if self.clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.detach(), n


def warmup_cosine(optimizer: torch.optim.Optimizer, total: int, warmup: int = 0,
                  floor: float = 0.05) -> torch.optim.lr_scheduler.LambdaLR:  # fmt: skip
    """lr x (step + 1) / warmup for the first `warmup` steps, then a cosine from lr down to
    lr x floor on step `total - 1`, the run's last (and floor after it, should a run go on)."""

    def rate(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        done = min(1.0, (step - warmup) / max(1, total - 1 - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * done))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, rate)


@dataclass(frozen=True)
class Build:
    """A recipe factory that crosses process boundaries as JSON (DDP ranks, torchrun):
    `target` is "module:function", called with `kwargs` — JSON values, Paths and pydantic
    models (re-validated on the other side). Calling it builds the recipe."""

    target: str
    kwargs: dict = field(default_factory=dict)

    def __call__(self) -> "Recipe":
        return resolve_name(self.target)(**self.kwargs)


def json_default(value):
    """What json cannot write itself (json.dumps's `default`): a pydantic model (tagged with
    its class) or a Path."""
    if isinstance(value, BaseModel):
        cls = type(value)
        return {"__model__": f"{cls.__module__}:{cls.__qualname__}", "data": value.model_dump()}
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} cannot travel in a Build")


def json_hook(obj: dict):
    """json.loads's `object_hook`: a pydantic model `json_default` wrote, re-validated."""
    return resolve_name(obj["__model__"]).model_validate(obj["data"]) if "__model__" in obj else obj


@dataclass
class Plan:
    """How to train: read from a pipeline's train section (missing fields take defaults)."""

    epochs: int
    max_steps_per_epoch: int | None = None
    device: str = "auto"
    precision: str = "fp32"
    checkpoint_every: int = 1  # epochs between checkpoints (the last epoch always writes one)
    nproc: int = 1
    launcher: str = "spawn"  # or "torchrun"
    progress: bool = True

    @classmethod
    def of(cls, cfg, **overrides) -> "Plan":
        values = {k: getattr(cfg, k) for k in cls.__dataclass_fields__ if hasattr(cfg, k)}
        return cls(**(values | overrides))


@dataclass
class Fitted:
    """What training produced (the model itself stays in the recipe)."""

    history: list[dict] = field(default_factory=list)  # one dict of metrics per epoch
    items: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    checkpoint: str | None = None  # the last checkpoint written or resumed from
    resumed_from: str | None = None  # the checkpoint this run continued, if any
    resumed_epochs: int = 0
    best_epoch: int | None = None  # 0-based, when the recipe selects
    best_value: float | None = None
    step_losses: list[float] = field(default_factory=list)  # this process's steps only
    best_state: dict | None = field(default=None, repr=False)  # best weights, no folder

    def series(self, key: str) -> list[float]:
        return [h[key] for h in self.history if key in h]

    @property
    def train_loss(self) -> list[float]:
        return self.series("train_loss")

    @property
    def per_sec(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


class Metrics:
    """Per-epoch metrics to one MLflow run, sent in batches (a 3,000-epoch run would
    otherwise wait on the store 3,000 times), the `earlier` (resumed) epochs' first. A store
    that fails is warned about once; training goes on, the checkpoints keep the model."""

    def __init__(self, run_id: str | None, earlier: list[dict], every_s: float = 5.0):
        self.run_id, self.every_s = run_id, every_s
        self.queue: list[tuple[int, dict]] = list(enumerate(earlier)) if run_id else []
        self.sent, self.down = time.monotonic(), None

    def add(self, step: int, metrics: dict) -> None:
        if self.run_id:
            self.queue.append((step, metrics))
            if time.monotonic() - self.sent >= self.every_s:
                self.flush()

    def flush(self) -> None:
        if self.queue and not self.down:
            from tasks.engine import tracking  # only with metrics to send: mlflow loads slowly

            try:
                tracking.log_steps(self.run_id, self.queue)
            except Exception as err:
                self.down = err
                run_logger().warning("MLflow logging failed (%s); training goes on, checkpointed",
                                     err)  # fmt: skip
        self.queue.clear()
        self.sent = time.monotonic()


KEPT = ("history", "items", "seconds", "best_epoch", "best_value")  # Fitted, in checkpoints
PARTS = ("model", "optimizer", "scheduler")  # the recipe's, where set


def _state(recipe: Recipe, epoch: int, fitted: Fitted, meta: dict | None) -> dict:
    state = {k: getattr(fitted, k) for k in KEPT} | {"epoch": epoch, "meta": meta or {},
             "rng": checkpoint.rng_state(), "recipe": recipe.state_dict()}  # fmt: skip
    parts = {k: getattr(recipe, k) for k in PARTS}
    return state | {k: part.state_dict() for k, part in parts.items() if part is not None}


def resume(recipe: Recipe, plan: Plan, where: Path | None) -> tuple[Fitted, dict | None]:
    """A record for training `recipe` by `plan`; with a checkpoint in `where`, the newest one
    loaded into the recipe and the record. (The record, the checkpoint's state or None.)"""
    fitted = Fitted(device=str(pick_device(plan.device)))
    found = checkpoint.latest(where) if where is not None else None
    if found is None:
        return fitted, None
    path, state = found
    for k in PARTS:
        if (part := getattr(recipe, k)) is not None:
            part.load_state_dict(state[k])
    recipe.load_state_dict(state["recipe"])
    checkpoint.restore_rng(state["rng"])
    for k in KEPT:
        setattr(fitted, k, state[k])
    fitted.resumed_epochs = state["epoch"] + 1
    fitted.resumed_from = fitted.checkpoint = str(path)
    return fitted, state


def run_epochs(
    recipe: Recipe,
    plan: Plan,
    where: Path | None,
    run_id: str | None,
    meta: dict | None,
    fitted: Fitted,
    step: Callable | None = None,
    lead: bool = True,
    monitor: Callable[[int, dict], None] | None = None,
) -> None:
    """The epoch loop itself, recording into `fitted`, in one process or on one DDP rank
    (`step`: the rank's step; only the `lead` rank checkpoints and logs). The resumed epochs
    are logged to `run_id` again, then each new one. `monitor(epoch, row)` sees each epoch's
    metrics after they are recorded; an exception it raises (a tuning trial pruned) ends
    training at that epoch boundary."""
    metrics = Metrics(run_id if lead else None, fitted.history)
    step = step or (lambda batch: recipe.train_step(partial(recipe.loss, recipe.model), batch, 1.0))
    try:
        shown_at = time.monotonic()
        for epoch in range(fitted.resumed_epochs, plan.epochs):
            recipe.start_epoch(epoch)
            if recipe.model is not None:
                recipe.model.train()
            batches = list(recipe.batches(epoch))[: plan.max_steps_per_epoch or None]
            total, seen = 0.0, 0  # the losses' running mean (a device tensor: no sync per step)
            started = time.perf_counter()
            off = {} if plan.progress and lead else {"disable": True}  # unset: TQDM_DISABLE=1 works
            # delay: a bar only for an epoch still running after 1 s (3,000 short epochs would
            # print 3,000 bars into a log)
            bar = tqdm(batches, desc=f"{recipe.name} {epoch + 1}/{plan.epochs}", unit="batch",
                       leave=False, delay=1.0, **off)  # fmt: skip
            for i, batch in enumerate(bar):
                with autocast(fitted.device, plan.precision):
                    loss, n = step(batch)
                value = check_finite(loss, epoch, i, f"{recipe.name}: ", fitted.checkpoint)
                fitted.step_losses.append(value)
                seen += n
                if recipe.report == "batch":
                    total += value
                else:
                    total += (loss - total) * (n / seen)  # running mean: no overflow
                signals.check(fitted.checkpoint)
            seconds = time.perf_counter() - started
            mean = float(total / max(len(batches), 1) if recipe.report == "batch" else total)
            fitted.items += seen
            fitted.seconds += seconds
            rate = seen / seconds if seconds else 0.0
            row = {"train_loss": mean, f"epoch_{recipe.unit}_per_sec": rate}
            recipe.epoch_loss = mean
            row |= recipe.evaluate(epoch)
            fitted.history.append(row)
            key, mode = recipe.select or (None, None)
            best, score = fitted.best_value, row.get(key)
            if key in row and (best is None or (score < best if mode == "min" else score > best)):
                fitted.best_epoch, fitted.best_value = epoch, score
                weights = recipe.model.state_dict() if lead and recipe.model is not None else None
                if weights is not None and where is not None:
                    checkpoint.save_best(where, weights, epoch, score)
                elif weights is not None:
                    fitted.best_state = {k: v.detach().clone() for k, v in weights.items()}
            last = epoch == plan.epochs - 1
            if lead and where is not None and (last or (epoch + 1) % plan.checkpoint_every == 0):
                fitted.checkpoint = str(checkpoint.save(where, epoch, _state(recipe, epoch, fitted,
                                                                            meta)))  # fmt: skip
            if lead:
                metrics.add(epoch, row)
                if last or epoch == fitted.resumed_epochs or time.monotonic() - shown_at >= 2:
                    shown_at = time.monotonic()  # a line per epoch, at most one per 2 s
                    shown = "  ".join(f"{k} {v:.4g}" for k, v in row.items())
                    run_logger().info("%s epoch %d/%d  %s", recipe.name, epoch + 1, plan.epochs,
                                      shown)  # fmt: skip
                if monitor is not None:
                    monitor(epoch, row)
            signals.check(fitted.checkpoint)
    finally:
        metrics.flush()


def seed_everything(seed: int) -> None:
    """torch, numpy's global stream and python's random, as the notebooks seed them."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
