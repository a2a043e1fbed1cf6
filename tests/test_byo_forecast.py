"""The forecaster on a series of your own (issue 30): `seqflow run forecast` (= airline) on the
car-sales CSV, the frequency's season, timestamps, gaps (an error before any stage, or filled
by interpolation and counted), duplicates and non-numeric values."""

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from flows import cli
from flows.config import load_config
from tasks.series import (
    SeriesError,
    period_index,
    period_label,
    read_own_series,
    regular_series,
    rmse,
    season_length,
)
from tasks.sources import SourceError

CARS = Path(__file__).resolve().parent.parent.parent / "shared/datasets/byo/monthly_car_sales"
CARS_CSV = CARS / "monthly-car-sales.csv"
if not CARS_CSV.is_file():  # the mirror's copy (SEQFLOW_MIRROR, set by conftest)
    from tests.conftest import MIRROR

    CARS_CSV = MIRROR / "byo/monthly_car_sales/monthly-car-sales.csv"
QUICK = ["--profile", "quick", "--set", "train.epochs=5", "--set", "train.eval_every=2"]


def car_sales() -> tuple[list[str], list[float]]:
    with CARS_CSV.open() as f:
        rows = list(csv.DictReader(f))
    return [r["Month"] for r in rows], [float(r["Sales"]) for r in rows]


def write_csv(path: Path, months: list[str], sales: list) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Month", "Sales"])
        w.writerows(zip(months, sales, strict=True))
    return path


def own(source: Path, *extra: str):
    return load_config("airline", "quick", [f"data.source={source}", "data.value_column=Sales",
                                            *extra])  # fmt: skip


def check_own(config) -> dict:
    from flows.airline import check_own

    return check_own(config)


def wanted(config) -> dict:
    from flows.airline import own_data

    return own_data(config)["wanted"]


# ---- pure functions ------------------------------------------------------------------------


def test_weekly_and_quarterly_series_get_their_season():
    start = period_index("2021-01-04", "W")  # a Monday
    weeks = [period_label(start + 7 * k, "W") for k in range(60)]
    labels, y, stats = regular_series(weeks[::-1], list(range(60))[::-1], "W")
    assert labels == weeks and y.tolist() == list(range(60)) and stats["reordered"]
    assert season_length("W") == 52
    quarters = [f"{2000 + k // 4}-Q{k % 4 + 1}" for k in range(20)]
    labels, _, stats = regular_series(quarters, [1.0] * 20, "Q")
    assert labels[0] == "2000-Q1" and labels[-1] == "2004-Q4" and stats["filled"] == 0
    assert season_length("Q") == 4 and season_length("D") == 7 and season_length("Y") == 1
    assert season_length("Q", season=2) == 2
    # the best profile's seasonal lag follows the frequency (the course: 12 months)
    assert load_config("airline", "best").windows.lag == 12
    assert load_config("airline", "best", ["data.freq=Q"]).windows.lag == 4
    assert load_config("airline", "best", ["data.freq=W"]).windows.lag == 52
    assert load_config("airline", "best", ["data.season=6"]).windows.lag == 6
    assert load_config("airline", "parity", ["data.freq=Q"]).windows.lag == 0


def test_timestamps_parse_at_each_frequency():
    import datetime

    assert period_label(period_index("1960-01-15", "M"), "M") == "1960-01"
    assert period_label(period_index("1960-05", "Q"), "Q") == "1960-Q2"
    assert period_index("1960Q3", "Q") == period_index("1960-07-01", "Q")
    assert period_index(1960, "Y") == period_index("1960", "Y") == 1960
    assert period_label(period_index(datetime.datetime(2020, 2, 29, 13), "D"), "D") == "2020-02-29"
    assert period_index("2020-02-30", "D") is None and period_index("soon", "M") is None
    # a yearly series with a gap, filled: the missing year is the mean of its neighbours
    labels, y, stats = regular_series([2001, 2000, 2003], [2.0, 1.0, 5.0], "Y", "interpolate")
    assert labels == ["2000", "2001", "2002", "2003"] and y.tolist() == [1.0, 2.0, 3.5, 5.0]
    assert stats["filled"] == 1
    with pytest.raises(SeriesError, match="2020-01-14 is not a whole number of weeks"):
        regular_series(["2020-01-06", "2020-01-14"], [1, 2], "W")


def test_gap_duplicate_and_text_are_clear_errors(tmp_path, data_dir):
    months, sales = car_sales()
    gap = write_csv(tmp_path / "gap.csv", months[:2] + months[3:], sales[:2] + sales[3:])
    with pytest.raises(SourceError, match=r"gap\.csv.*1960-03 is missing.*fill_gaps=interpolate"):
        read_own_series(own(gap).data, wanted(own(gap)))
    filled = read_own_series(own(gap, "data.fill_gaps=interpolate").data, wanted(own(gap)))
    assert filled["stats"]["filled"] == 1 and filled["labels"][2] == "1960-03"
    assert filled["values"][2] == (sales[1] + sales[3]) / 2 and len(filled["values"]) == 108
    dup = write_csv(tmp_path / "dup.csv", months[:3] + months[2:], sales[:3] + sales[2:])
    with pytest.raises(SourceError, match=r"rows 3 and 4 both fall on 1960-03"):
        read_own_series(own(dup).data, wanted(own(dup)))
    text = write_csv(tmp_path / "text.csv", months[:5], [1, 2, "12k", 4, 5])
    with pytest.raises(SourceError, match=r"row 3 \(1960-03\): value '12k' is not a number"):
        read_own_series(own(text).data, wanted(own(text)))
    empty = write_csv(tmp_path / "empty.csv", months[:5], [1, 2, 3, "n/a", 5])
    with pytest.raises(SourceError, match=r"row 4 \(1960-04\): value is empty"):
        read_own_series(own(empty).data, wanted(own(empty)))
    weeks = write_csv(tmp_path / "weeks.csv", [f"2020-W{k}" for k in range(3)], [1, 2, 3])
    with pytest.raises(SourceError, match=r"row 1: time '2020-W0' is not a timestamp"):
        check_own(own(weeks, "data.freq=W"))
    start = period_index("2021-01-04", "W")
    weekly = [period_label(start + 7 * k, "W") for k in range(60)]
    short = write_csv(tmp_path / "short.csv", weekly, sales[:60])
    with pytest.raises(SourceError, match=r"60 weekly periods leave 48 .* one season \(52\)"):
        check_own(own(short, "data.freq=W"))
    assert len(check_own(own(short, "data.freq=W", "data.season=4"))["values"]) == 60
    with pytest.raises(SourceError, match=r"no column 'Passengers'.*Month, Sales"):
        read_own_series(own(gap, "data.value_column=Passengers").data,
                        wanted(own(gap, "data.value_column=Passengers")))  # fmt: skip


def test_a_gap_stops_the_cli_before_any_stage(tmp_path, data_dir, capsys):
    months, sales = car_sales()
    gap = write_csv(tmp_path / "gap.csv", months[:40] + months[41:], sales[:40] + sales[41:])
    code = cli.main(["run", "forecast", "--data", str(gap), "--set", "data.value_column=Sales",
                     *QUICK])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "1963-05 is missing" in err and "gap.csv" in err
    assert not (data_dir / "stages").exists() and not (data_dir / "mlflow.db").exists()


# ---- the real flow -------------------------------------------------------------------------


def test_car_sales_forecast_by_its_new_name(prefect_server, data_dir, tmp_path, capsys):
    from flows import pipelines
    from flows.airline import airline, fingerprint
    from tasks.engine import tracking

    assert pipelines.get("forecast").name == "airline" == pipelines.canonical("airline")
    args = cli.parser().parse_args(["run", "forecast"])
    assert args.pipeline == "forecast"  # main() turns it into airline before anything reads it
    code = cli.main(["run", "forecast", "--data", str(CARS_CSV), "--set",
                     "data.value_column=Sales", *QUICK])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    (run,) = tracking.pipeline_runs("airline")  # the same experiment as `seqflow run airline`
    m = run.data.metrics
    months, sales = car_sales()
    y = np.array(sales)
    n_train = int(108 * 0.8)
    t = np.arange(n_train, 108)
    assert m["seasonal_naive_test_rmse"] == pytest.approx(rmse(y[t - 12], y[t]))
    assert m["naive_test_rmse"] == pytest.approx(rmse(y[t - 1], y[t]))
    assert math.isfinite(m["test_rmse"]) and m["test_rmse"] > 0
    assert m["gaps_filled"] == 0 and m["season_length"] == 12
    assert run.data.tags["data_fingerprint"] == fingerprint(own(CARS_CSV))  # file sha256 + mapping
    assert "forecast.png" in {a.path for a in c.list_artifacts(run.info.run_id)}
    (given,) = c.get_run(run.info.run_id).inputs.dataset_inputs  # the car sales, not the course's
    assert given.dataset.name == "monthly-car-sales.csv" and str(CARS_CSV) in given.dataset.source
    # the pyfunc carries the frequency and the series' timestamps: it continues from 1968-12
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model("models:/airline/1")
    out = model.predict(pd.DataFrame({"horizon": [3]}))
    assert out["months"][0] == ["1969-01", "1969-02", "1969-03"]
    assert all(math.isfinite(v) for v in out["forecast"][0])
    inner = model.unwrap_python_model()
    assert inner.freq == "M" and inner.last == period_index("1968-12", "M")

    # a gap filled by interpolation: counted in the ingest stage's stats and as a metric
    gap = write_csv(tmp_path / "gap.csv", months[:2] + months[3:], sales[:2] + sales[3:])
    run_id = airline(profile="quick", overrides=[
        f"data.source={gap}", "data.value_column=Sales", "data.fill_gaps=interpolate",
        "train.epochs=3", "train.eval_every=2"])  # fmt: skip
    assert c.get_run(run_id).data.metrics["gaps_filled"] == 1
    ingest = [p for p in (data_dir / "stages").rglob("manifest.json") if "ingest" in str(p)]
    stats = [json.loads(p.read_text()).get("stats", {}) for p in ingest]
    assert any(s.get("filled") == 1 and s.get("first") == "1960-01" for s in stats), stats


def test_the_pyfunc_answers_in_its_own_periods(tmp_path):
    """A quarterly model's forecaster continues its series quarter by quarter and reads a
    last_month at its frequency (the settings and series artifacts as log_forecaster writes)."""
    from flows.forecasting import Forecaster
    from flows.serving import BadInput
    from models.forecaster import LSTMForecaster
    from tasks.runtime import checkpoint

    checkpoint.write(tmp_path / "w.pt", LSTMForecaster(1, 4, 1).state_dict())
    settings = {"lookback": 2, "transform": {"log": False, "lag": 0, "mean": 0.0, "std": 1.0},
                "hidden": 4, "n_layers": 1, "freq": "Q", "season": 4}  # fmt: skip
    series = {"times": ["2000-Q3", "2000-Q4", "2001-Q1"], "freq": "Q", "values": [1.0, 2.0, 3.0]}
    (tmp_path / "s.json").write_text(json.dumps(settings))
    (tmp_path / "t.json").write_text(json.dumps(series))
    f = Forecaster()
    f.load({"settings": tmp_path / "s.json", "series": tmp_path / "t.json",
            "weights": tmp_path / "w.pt"})  # fmt: skip
    assert f.forecast(*f.request(1, 3, None, None))[0] == ["2001-Q2", "2001-Q3", "2001-Q4"]
    assert f.forecast(*f.request(1, 2, [4.0], None))[0] == ["2001-Q3", "2001-Q4"]
    assert f.forecast(*f.request(1, 1, [1.0, 2.0], "2010-Q4"))[0] == ["2011-Q1"]
    with pytest.raises(BadInput, match="last_month 'later' is not a timestamp"):
        f.request(1, 1, [1.0, 2.0], "later")


def test_the_pyfunc_forecasts_with_differences_and_a_highway(tmp_path):
    """The best recipe's model (seasonal + first differences of log y, an LSTM with a highway)
    served: its first forecast is the model's one-step prediction turned back into passengers,
    and a history of its own must cover the window, the season and the first difference."""
    import torch

    from flows.forecasting import Forecaster
    from flows.serving import BadInput
    from models.forecaster import LSTMForecaster
    from tasks.runtime import checkpoint
    from tasks.series import Transform

    torch.manual_seed(0)
    model = LSTMForecaster(1, 4, 1, highway=3)
    checkpoint.write(tmp_path / "w.pt", model.state_dict())
    tr = Transform(log=True, lag=12, mean=0.01, std=0.05, diff=1)
    settings = {"lookback": 3, "transform": {"log": True, "lag": 12, "mean": 0.01, "std": 0.05,
                                             "diff": 1}, "hidden": 4, "n_layers": 1,
                "highway": 3}  # fmt: skip
    y = 100 + 10 * np.sin(np.arange(40) / 2) + np.arange(40)
    series = {"months": [f"{1950 + i // 12}-{i % 12 + 1:02d}" for i in range(40)],
              "values": y.tolist()}  # fmt: skip
    (tmp_path / "s.json").write_text(json.dumps(settings))
    (tmp_path / "t.json").write_text(json.dumps(series))
    f = Forecaster()
    f.load({"settings": tmp_path / "s.json", "series": tmp_path / "t.json",
            "weights": tmp_path / "w.pt"})  # fmt: skip
    months, out = f.forecast(*f.request(1, 2, None, None))
    assert months == ["1953-05", "1953-06"]
    with torch.no_grad():
        x = torch.tensor(tr.forward(y)[-3:], dtype=torch.float32)[None, :, None]
        pred = float(model(x)[0, -1, 0])
    assert out[0] == pytest.approx(float(tr.invert(np.array([pred]), np.array([40]), y)[0]))
    with pytest.raises(BadInput, match="needs the last 16 at least"):  # 3 + 12 + 1
        f.request(1, 1, y[-15:].tolist(), "1960-01")
    assert f.forecast(*f.request(1, 1, y[-16:].tolist(), "1960-01"))[0] == ["1960-02"]
