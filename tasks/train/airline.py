"""Training the airline forecaster as the notebook does: batches of 8 in order, Adam, MSE over
every position of each window; RMSE on train and test every `eval_every` epochs."""

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from tasks.runtime.faults import check_finite


@dataclass
class ForecastHistory:
    epochs: list[int] = field(default_factory=list)
    train_rmse: list[float] = field(default_factory=list)
    test_rmse: list[float] = field(default_factory=list)
    seconds: float = 0.0


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    return model(torch.from_numpy(x)).numpy()


def train_forecaster(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    cfg,
    evaluate: Callable[[nn.Module], tuple[float, float]],
    on_eval: Callable[[int, float, float], None] | None = None,
) -> ForecastHistory:
    """`evaluate(model) -> (train_rmse, test_rmse)` in passengers, run at epoch 0, every
    cfg.eval_every epochs and after the last (the notebook's schedule)."""
    x, y = (torch.from_numpy(a) for a in train)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.MSELoss()
    gen = torch.Generator().manual_seed(cfg.seed)
    hist = ForecastHistory()
    started = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen) if cfg.shuffle else torch.arange(len(x))
        for i in range(0, len(x), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = loss_fn(model(x[idx]), y[idx])
            check_finite(loss, epoch, i // cfg.batch_size, "airline: ")  # NaN/inf stops here
            opt.zero_grad()
            loss.backward()
            opt.step()
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs - 1:
            tr, te = evaluate(model)
            hist.epochs.append(epoch)
            hist.train_rmse.append(tr)
            hist.test_rmse.append(te)
            if on_eval:
                on_eval(epoch, tr, te)
    hist.seconds = time.perf_counter() - started
    return hist
