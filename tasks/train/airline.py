"""The airline forecaster's training pieces, as the notebook trains it: batches of 8 in order
(or shuffled by the recipe's own generator), Adam, MSE over every position of each window
(train.loss_on "last": its last position only);
RMSE in passengers on train and test at epoch 0, every `eval_every` epochs and the last."""

import numpy as np
import torch
from torch import nn

from models.forecaster import LSTMForecaster
from tasks.runtime.loop import Recipe, pick_device, seed_everything
from tasks.series import read_next, read_series, read_transform, read_windows, rmse


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    return model(torch.from_numpy(x).to(next(model.parameters()).device)).cpu().numpy()


def one_step(model, x: np.ndarray, t: np.ndarray, tr, y: np.ndarray) -> np.ndarray:
    """The model's forecasts of months `t` from the windows `x` ending before them (their last
    position), in the series' units (`tr` inverted against the series `y`)."""
    return tr.invert(predict(model, x)[:, -1, 0], t, y)


class Evaluator:
    """RMSE in passengers: the notebook's (every position of every window of a split) and
    one step ahead (each test month from the `lookback` months before it)."""

    def __init__(self, series, wins):
        self.y = read_series(series)[1]
        self.tr = read_transform(wins)
        self.split = {s: read_windows(wins, s) for s in ("train", "test")}
        self.next_x, self.next_t = read_next(wins)

    def window_rmse(self, model, split: str) -> float:
        x, _, t = self.split[split]
        lb = x.shape[1]
        months = t[:, None] - lb + 1 + np.arange(lb)  # target month of each position
        pred = self.tr.invert(predict(model, x)[..., 0], months, self.y)
        return rmse(pred, self.y[months])

    def __call__(self, model) -> tuple[float, float]:
        return self.window_rmse(model, "train"), self.window_rmse(model, "test")

    def next_step(self, model) -> np.ndarray:
        return one_step(model, self.next_x, self.next_t, self.tr, self.y)

    def train_fit(self, model) -> tuple[np.ndarray, np.ndarray]:
        x, _, t = self.split["train"]
        return t, one_step(model, x, t, self.tr, self.y)


class ForecastRecipe(Recipe):
    """LSTMForecaster + Adam + MSE on the training windows; `evaluate` returns train_rmse and
    test_rmse on the notebook's schedule only (so those metrics keep their epochs as steps)."""

    name, unit = "airline", "windows"

    def __init__(self, cfg, evaluator, train: tuple[np.ndarray, np.ndarray] | None = None):
        seed_everything(cfg.seed)  # torch's stream draws the weights, as the notebook's
        self.cfg, self.evaluator = cfg, evaluator
        device = pick_device(cfg.device)
        x, y = train if train is not None else evaluator.split["train"][:2]
        lookback = x.shape[1]
        self.model = LSTMForecaster(1, cfg.hidden, cfg.n_layers, cfg.dropout,
                                    lookback if cfg.highway else 0).to(device)  # fmt: skip
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr,
                                          weight_decay=cfg.weight_decay)  # fmt: skip
        self.criterion = nn.MSELoss()
        self.x, self.y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        self.gen = torch.Generator().manual_seed(cfg.seed)  # the shuffle's own stream

    def batches(self, epoch: int):
        n, size = len(self.x), self.cfg.batch_size
        order = torch.randperm(n, generator=self.gen) if self.cfg.shuffle else torch.arange(n)
        return [order[i : i + size].to(self.x.device) for i in range(0, n, size)]

    def loss(self, model, idx):
        out, target = model(self.x[idx]), self.y[idx]
        if self.cfg.loss_on == "last":  # the one-step-ahead forecast only
            out, target = out[:, -1], target[:, -1]
        return self.criterion(out, target), len(idx)

    def evaluate(self, epoch: int) -> dict[str, float]:
        if epoch % self.cfg.eval_every and epoch != self.cfg.epochs - 1:
            return {}
        keys = getattr(self.evaluator, "keys", ("train_rmse", "test_rmse"))
        return dict(zip(keys, self.evaluator(self.model), strict=True))

    def state_dict(self) -> dict:
        return {"generator": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["generator"])


class ValidationEvaluator:
    """Tuning (flows/tune.py): the training windows split by time. Windows whose last target
    is one of the last `n_val` training periods are validation, the rest train; RMSE in the
    series' units on each, one step ahead on validation. Reads no test window."""

    keys = ("train_rmse", "val_rmse")

    def __init__(self, series, wins, n_val: int):
        self.y = read_series(series)[1]
        self.tr = read_transform(wins)
        x, y, t = read_windows(wins, "train")
        cut = int(t.max()) + 1 - n_val
        fit, val = t < cut, t >= cut
        if fit.sum() < 1 or val.sum() < 1:
            raise ValueError(
                f"{len(t)} training windows leave none to fit or to validate "
                f"on with {n_val} validation periods: lower windows.lookback"
            )
        self.train = (x[fit], y[fit])
        self.fit_t, self.val = t[fit], (x[val], t[val])

    def __call__(self, model) -> tuple[float, float]:
        (x, t), x_fit = self.val, self.train[0]
        pred = one_step(model, x, t, self.tr, self.y)
        fit = one_step(model, x_fit, self.fit_t, self.tr, self.y)
        return rmse(fit, self.y[self.fit_t]), rmse(pred, self.y[t])
