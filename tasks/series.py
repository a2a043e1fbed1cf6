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
from datetime import date, datetime
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


# ---- a series of your own: timestamps at a frequency, checked for regular spacing ----------

SEASONS = {"D": 7, "W": 52, "M": 12, "Q": 4, "Y": 1}  # the season length each frequency implies
STEPS = {"D": 1, "W": 7, "M": 1, "Q": 1, "Y": 1}  # index units between two timestamps
FREQ_WORDS = {"D": "daily", "W": "weekly", "M": "monthly", "Q": "quarterly", "Y": "yearly"}
QUARTER = re.compile(r"^(\d{4})[-\s]?[Qq]([1-4])$")
YEAR_MONTH = re.compile(r"^(\d{4})[-/](\d{1,2})$")
YEAR = re.compile(r"^(\d{4})$")


def season_length(freq: str, season: int | None = None) -> int:
    """data.season when set, else the frequency's: D 7, W 52, M 12, Q 4, Y 1."""
    return season or SEASONS[freq]


def _as_date(value) -> date | None:
    """A timestamp as the date it starts on: ISO date (time of day ignored), YYYY-MM, YYYY-Qn,
    YYYY, a year as a number, a date or datetime; None when it is none of these."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[D]").item()
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return date(int(value), 1, 1) if 1 <= value <= 9999 else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if m := YEAR.match(text):
            return date(int(m[1]), 1, 1)
        if m := QUARTER.match(text):
            return date(int(m[1]), 3 * int(m[2]) - 2, 1)
        if m := YEAR_MONTH.match(text):
            return date(int(m[1]), int(m[2]), 1)
        return datetime.fromisoformat(text.replace("/", "-")).date()
    except ValueError:
        return None


def period_index(value, freq: str) -> int | None:
    """A timestamp -> its period's integer index at `freq` (consecutive periods differ by
    STEPS[freq]): days for D and W, months, quarters or years since year 0; None if unparsed."""
    d = _as_date(value)
    if d is None:
        return None
    if freq in ("D", "W"):
        return d.toordinal()
    return {"M": d.year * 12 + d.month - 1, "Q": d.year * 4 + (d.month - 1) // 3,
            "Y": d.year}[freq]  # fmt: skip


def period_start(index: int, freq: str) -> date:
    """The first day of the period at `index` (period_index's inverse)."""
    if freq in ("D", "W"):
        return date.fromordinal(index)
    if freq == "M":
        return date(index // 12, index % 12 + 1, 1)
    if freq == "Q":
        return date(index // 4, 3 * (index % 4) + 1, 1)
    return date(index, 1, 1)


def period_label(index: int, freq: str) -> str:
    """ISO date (D, W), YYYY-MM, YYYY-Qn or YYYY."""
    if freq in ("D", "W"):
        return date.fromordinal(index).isoformat()
    if freq == "M":
        return f"{index // 12:04d}-{index % 12 + 1:02d}"
    if freq == "Q":
        return f"{index // 4:04d}-Q{index % 4 + 1}"
    return f"{index:04d}"


def _number(value) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def regular_series(
    times: list, values: list, freq: str, fill_gaps: str = "error", name: str = "the series"
) -> tuple[list[str], np.ndarray, dict]:
    """Rows in any order -> (labels, values, stats), sorted by time and checked for regular
    spacing at `freq`. An unparsed timestamp, a duplicated one or a non-numeric value names its
    row; a gap names the first missing timestamp, unless fill_gaps="interpolate", which fills
    every gap by linear interpolation and counts the filled timestamps (stats["filled"])."""
    if not times:
        raise SeriesError(f"{name} has no rows: give a time and a value column with data")
    step, idx, ys = STEPS[freq], [], []
    for row, (t, v) in enumerate(zip(times, values, strict=True), start=1):
        i = period_index(t, freq)
        if i is None:
            raise SeriesError(f"{name}, row {row}: time {t!r} is not a timestamp (an ISO date, "
                              "YYYY-MM, YYYY-Qn or YYYY); fix that row")  # fmt: skip
        y = _number(v)
        if y is None:
            empty = v is None or (isinstance(v, float) and np.isnan(v))  # an empty cell, "n/a"
            shown = "is empty (or n/a)" if empty else f"{v!r} is not a number"
            raise SeriesError(f"{name}, row {row} ({t}): value {shown}; fix the row or map "
                              "data.value_column to a numeric column")  # fmt: skip
        idx.append(i)
        ys.append(y)
    order = np.argsort(np.array(idx), kind="stable")
    idx_arr, y_arr = np.array(idx)[order], np.array(ys, dtype=np.float64)[order]
    same = np.flatnonzero(np.diff(idx_arr) == 0)
    if len(same):
        a, b = sorted(order[same[0] : same[0] + 2] + 1)
        when = period_label(idx_arr[same[0]], freq)
        raise SeriesError(f"{name}: rows {a} and {b} both fall on {when} ({FREQ_WORDS[freq]}); "
                          "remove one of them or check data.freq")  # fmt: skip
    if step > 1 and len(off := np.flatnonzero((idx_arr - idx_arr[0]) % step)):
        raise SeriesError(f"{name}: {period_label(idx_arr[off[0]], freq)} is not a whole number "
                          f"of weeks after {period_label(idx_arr[0], freq)}; a weekly series "
                          "keeps one weekday")  # fmt: skip
    full = np.arange(idx_arr[0], idx_arr[-1] + 1, step)
    missing = len(full) - len(idx_arr)
    if missing and fill_gaps != "interpolate":
        k = int(np.flatnonzero(np.diff(idx_arr) > step)[0])
        first = period_label(idx_arr[k] + step, freq)
        raise SeriesError(
            f"{name}: {first} is missing ({FREQ_WORDS[freq]} series: {missing} timestamp(s) "
            f"missing in all, the first between {period_label(idx_arr[k], freq)} and "
            f"{period_label(idx_arr[k + 1], freq)}); add the rows, or set "
            "data.fill_gaps=interpolate to fill them by linear interpolation"
        )
    y_full = np.interp(full, idx_arr, y_arr)
    y_full[np.searchsorted(full, idx_arr)] = y_arr  # the given values exactly
    stats = {"rows": len(idx_arr), "filled": int(missing),
             "reordered": bool((np.diff(order) < 0).any()),
             "first": period_label(full[0], freq),
             "last": period_label(full[-1], freq)}  # fmt: skip
    return [period_label(int(i), freq) for i in full], y_full, stats


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


def read_own_series(cfg, wanted: dict) -> dict:
    """A data section's own source (tasks/sources.py), its train split whole, as a regular
    series: {identity, source, kind, labels, values, stats}. Any problem (a column, a
    timestamp, a value, a duplicate, a gap) is a SourceError naming the source and the fix,
    raised before any stage."""
    from tasks.sources import SourceError, fingerprint, open_source, rows_table

    source, ident, splits, _ = open_source(cfg, wanted, whole=True)
    times: list = []
    values: list = []
    for table in rows_table(splits["train"], {"t": cfg.time_column, "v": cfg.value_column}):
        times += table.column("t").to_pylist()
        values += table.column("v").to_pylist()
    try:
        labels, y, stats = regular_series(times, values, cfg.freq, cfg.fill_gaps,
                                          f"data.source {source.given!r}")  # fmt: skip
    except SeriesError as err:
        raise SourceError(str(err)) from None
    return {"identity": ident, "fingerprint": fingerprint(ident), "source": source.name,
            "kind": source.kind, "labels": labels, "values": y.tolist(),
            "stats": stats}  # fmt: skip


@task(name="ingest", cache_policy=NO_CACHE)
def ingest_own_series(pipeline: str, cfg, read: dict) -> StageOutput:
    """A series of your own, read and checked (read_own_series) -> series.parquet (time label
    at data.freq, value float64); the filled gaps counted in the stats."""

    def build(out: Path) -> dict:
        table = pa.table({"time": read["labels"], "value": pa.array(read["values"], pa.float64())})
        write_table(table, out / "series.parquet")
        return {"source": read["source"], "kind": read["kind"], "freq": cfg.freq} | read["stats"]

    return run_stage(pipeline, "ingest", inputs={"source": read["fingerprint"]},
                     params={"identity": read["identity"], "freq": cfg.freq,
                             "fill_gaps": cfg.fill_gaps, "split": cfg.train_split},
                     libs=("datasets", "pyarrow", "numpy"), build=build)  # fmt: skip


def read_series(stage: StageOutput) -> tuple[list[str], np.ndarray]:
    """(time labels, values): the course's "month" column or your own series' "time"."""
    t = pq.read_table(stage.file("series.parquet"))
    return t.column(0).to_pylist(), t.column("value").to_numpy()


@dataclass
class Transform:
    """y -> z = log(y) or y -> w_t = z_t - z_{t-lag} (lag 0: none) -> d_t = w_t - w_{t-1}
    (diff 1; 0: d = w) -> (d - mean) / std."""

    log: bool = False
    lag: int = 0
    mean: float = 0.0
    std: float = 1.0
    diff: int = 0

    @property
    def first(self) -> int:
        """The first index with a transformed value (the ones before it are NaN)."""
        return self.lag + self.diff

    def forward(self, y: np.ndarray) -> np.ndarray:
        """Transformed series, same length; the first `lag + diff` entries are NaN."""
        z = self._z(y.astype(np.float64))
        d = np.full_like(z, np.nan)
        d[self.lag :] = z[self.lag :] - (z[: len(z) - self.lag] if self.lag else 0)
        if self.diff:
            d[1:] = d[1:] - d[:-1]  # NaN stays NaN: index lag becomes NaN too
            d[: self.first] = np.nan
        return (d - self.mean) / self.std

    def invert(self, pred: np.ndarray, t: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Predictions `pred` of the transformed value at months `t` -> passengers, using the
        known history y (y[t - lag], and y[t - 1], y[t - 1 - lag] with diff)."""
        z_hist = self._z(y)
        z = pred * self.std + self.mean + (z_hist[t - self.lag] if self.lag else 0)
        if self.diff:  # + w_{t-1}, the previous month's seasonal difference
            z = z + z_hist[t - 1] - (z_hist[t - 1 - self.lag] if self.lag else 0)
        return np.exp(z) if self.log else z

    def _z(self, y: np.ndarray) -> np.ndarray:
        return np.log(y) if self.log else y

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def fit_transform(y: np.ndarray, n_train: int, log: bool, lag: int, scale: bool,
                  diff: int = 0) -> Transform:  # fmt: skip
    tr = Transform(log, lag, diff=diff)
    if scale:
        d = tr.forward(y[:n_train])[tr.first :]
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
        first = cfg.lag + cfg.diff  # transformed values start there
        if n_train - first <= cfg.lookback or len(y) - n_train <= cfg.lookback:
            raise SeriesError(
                f"{len(y)} months split at {n_train} leave no window of lookback "
                f"{cfg.lookback} (lag {cfg.lag}, diff {cfg.diff}) in each part; lower "
                f"windows.lookback to {min(n_train - first, len(y) - n_train) - 1} or less"
            )
        tr = fit_transform(y, n_train, cfg.log, cfg.lag, cfg.scale, cfg.diff)
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
