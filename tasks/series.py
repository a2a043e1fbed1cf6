"""Monthly time series (airline passengers): validation, transforms, windows, baselines.

The notebook's windows (create_timeseries_dataset): inside each chronological split, feature
= s[i : i + lookback], target = s[i + 1 : i + lookback + 1], for i in range(len - lookback).
Transforms (optional, for the non-parity profiles): log, seasonal differencing at a lag, and
standardising with the training part's mean and std; `Transform.invert` maps predictions
back to passengers.
"""

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.stage import StageOutput, run_stage, write_table

MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class SeriesError(ValueError):
    """A series the pipeline cannot use; the message names the row and the fix."""


def parse_series(months: list[str], values: list[str], name: str) -> np.ndarray:
    """Check consecutive YYYY-MM months and positive numbers -> float64 values."""
    if not months:
        raise SeriesError(f"{name} has no data rows: expected Month,Passengers lines")
    index = []
    for row, m in enumerate(months, start=1):
        match = MONTH.match(m.strip())
        if not match or not 1 <= int(match[2]) <= 12:
            raise SeriesError(f"{name}, row {row}: month {m!r} is not YYYY-MM; fix that row")
        index.append(int(match[1]) * 12 + int(match[2]) - 1)
    for row in range(1, len(index)):
        if index[row] != index[row - 1] + 1:
            what = "repeats" if index[row] == index[row - 1] else "does not follow"
            raise SeriesError(
                f"{name}, row {row + 1}: month {months[row]} {what} {months[row - 1]}; the "
                "series must be monthly without gaps: add the missing month(s) or remove the row"
            )
    out = []
    for row, v in enumerate(values, start=1):
        try:
            out.append(float(v))
        except ValueError:
            raise SeriesError(f"{name}, row {row}: value {v!r} is not a number; fix it") from None
        if not np.isfinite(out[-1]) or out[-1] <= 0:
            raise SeriesError(f"{name}, row {row}: value {v!r} must be a positive number")
    return np.array(out)


def load_series(
    path: Path, columns: tuple[str, str], expected_rows: int | None
) -> tuple[list[str], np.ndarray]:
    """Read and validate a month,value CSV -> (months, values)."""
    from tasks.data import read_csv

    table = read_csv(path, columns)
    months, values = (table.columns[c] for c in columns)
    out = parse_series(months, values, str(path))
    if expected_rows and len(out) != expected_rows:
        raise SeriesError(
            f"{path} has {len(out)} months, expected {expected_rows}; check the file or "
            "set data.expected_rows"
        )
    return [m.strip() for m in months], out


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_series(pipeline: str, dataset: str, file: str, expected_rows: int | None) -> StageOutput:
    """Fetch and validate the CSV -> series.parquet (month string, value float64)."""
    from tasks.data import fetch
    from tasks.engine.catalog import DATASETS

    spec = DATASETS[dataset]
    path = fetch(spec, file)
    months, values = load_series(path, spec.columns, expected_rows)

    def build(out: Path) -> dict:
        write_table(pa.table({"month": months, "value": values}), out / "series.parquet")
        return {"rows": len(values), "first": months[0], "last": months[-1]}

    return run_stage(pipeline, "ingest", inputs={"source": spec.file(file).sha256},
                     params={"dataset": dataset, "file": file},
                     libs=("pyarrow",), build=build)  # fmt: skip


def read_series(stage: StageOutput) -> tuple[list[str], np.ndarray]:
    t = pq.read_table(stage.file("series.parquet"))
    return t.column("month").to_pylist(), t.column("value").to_numpy()


@dataclass
class Transform:
    """y -> z = log(y) or y -> d_t = z_t - z_{t-lag} (lag 0: none) -> (d - mean) / std."""

    log: bool = False
    lag: int = 0
    mean: float = 0.0
    std: float = 1.0

    def forward(self, y: np.ndarray) -> np.ndarray:
        """Transformed series, same length; the first `lag` entries are NaN."""
        z = self._z(y.astype(np.float64))
        d = np.full_like(z, np.nan)
        d[self.lag :] = z[self.lag :] - (z[: len(z) - self.lag] if self.lag else 0)
        return (d - self.mean) / self.std

    def invert(self, pred: np.ndarray, t: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Predictions `pred` of the transformed value at months `t` -> passengers, using the
        known history y (y[t - lag])."""
        d = pred * self.std + self.mean
        z = d + (self._z(y)[t - self.lag] if self.lag else 0)
        return np.exp(z) if self.log else z

    def _z(self, y: np.ndarray) -> np.ndarray:
        return np.log(y) if self.log else y

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def fit_transform(y: np.ndarray, n_train: int, log: bool, lag: int, scale: bool) -> Transform:
    tr = Transform(log, lag)
    if scale:
        d = tr.forward(y[:n_train])[lag:]
        tr.mean, tr.std = float(d.mean()), float(d.std()) or 1.0
    return tr


def next_step_windows(s: np.ndarray, months: np.ndarray, lookback: int) -> np.ndarray:
    """For each month t, the `lookback` values before it (history before a split is known at
    forecast time): [len(months), lookback]."""
    return s[months[:, None] - lookback + np.arange(lookback)]


def windows(s: np.ndarray, start: int, stop: int, lookback: int) -> tuple[np.ndarray, ...]:
    """The notebook's windows of s[start:stop]: (x [k, lb], y [k, lb], t [k]) where t is the
    month index of each window's last target: x the lookback values before t, y those before
    t + 1 (x shifted by one)."""
    t = np.arange(start + lookback, stop)
    return next_step_windows(s, t, lookback), next_step_windows(s, t + 1, lookback), t


def baselines(y: np.ndarray, n_train: int, season: int = 12) -> dict[str, np.ndarray]:
    """One-step-ahead forecasts of every test month t >= n_train:
    naive y[t-1]; seasonal naive y[t-12]; seasonal naive with drift y[t-12] + c, with c the
    mean year-over-year change over the training months (fable's SNAIVE(y ~ drift()))."""
    t = np.arange(n_train, len(y))
    c = float(np.mean(y[season:n_train] - y[: n_train - season]))
    return {"naive": y[t - 1], "seasonal_naive": y[t - season], "drift": y[t - season] + c}


def rmse(pred: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(target)) ** 2)))


@task(name="windows", cache_policy=NO_CACHE)
def window_series(pipeline: str, series: StageOutput, cfg) -> StageOutput:
    """windows.parquet (split, x, y, t: the transformed series, the notebook's windows per
    split) + next.parquet (every test month t with its lookback window) + transform.json."""

    def build(out: Path) -> dict:
        _, y = read_series(series)
        n_train = int(len(y) * cfg.train_fraction)  # the notebook: int(len * p_train)
        first = cfg.lag  # transformed values start at the lag
        if n_train - first <= cfg.lookback or len(y) - n_train <= cfg.lookback:
            raise SeriesError(
                f"{len(y)} months split at {n_train} leave no window of lookback "
                f"{cfg.lookback} (lag {cfg.lag}) in each part; lower windows.lookback"
            )
        tr = fit_transform(y, n_train, cfg.log, cfg.lag, cfg.scale)
        s = tr.forward(y)
        train = windows(s, first, n_train, cfg.lookback)
        test = windows(s, n_train, len(y), cfg.lookback)
        x, yy, t = (np.concatenate(pair) for pair in zip(train, test, strict=True))
        split = ["train"] * len(train[2]) + ["test"] * len(test[2])
        x, yy = list(x.astype(np.float32)), list(yy.astype(np.float32))
        cols = {"split": split, "x": x, "y": yy, "t": t.tolist()}
        write_table(pa.table(cols), out / "windows.parquet")
        months = np.arange(max(n_train, first + cfg.lookback), len(y))
        nxt = next_step_windows(s, months, cfg.lookback).astype(np.float32)
        write_table(pa.table({"t": months, "x": list(nxt)}), out / "next.parquet")
        (out / "transform.json").write_text(tr.to_json())
        return {"train_windows": len(train[2]), "test_windows": len(test[2]),
                "n_train": n_train, "next_months": len(months)}  # fmt: skip

    return run_stage(pipeline, "windows", inputs={"series": series.fingerprint},
                     params=cfg.model_dump(), libs=("pyarrow", "numpy"), build=build)  # fmt: skip


def _stacked(table: pa.Table, name: str) -> np.ndarray:
    """A list<float> column of equal-length rows -> float32 [rows, length, 1]."""
    return np.stack(table.column(name).to_pylist()).astype(np.float32)[..., None]


def read_windows(stage: StageOutput, split: str) -> tuple[np.ndarray, ...]:
    """(x [k, lb, 1], y [k, lb, 1], t [k]) float32 of one split."""
    t = pq.read_table(stage.file("windows.parquet"), filters=[("split", "==", split)])
    return _stacked(t, "x"), _stacked(t, "y"), t.column("t").to_numpy()


def read_next(stage: StageOutput) -> tuple[np.ndarray, np.ndarray]:
    t = pq.read_table(stage.file("next.parquet"))
    return _stacked(t, "x"), t.column("t").to_numpy()


def read_transform(stage: StageOutput) -> Transform:
    return Transform(**json.loads(stage.file("transform.json").read_text()))
