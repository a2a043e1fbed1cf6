"""Airline series: validation errors, the notebook's windows, transforms, baselines, the flow."""

import math

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from flows.config import load_config
from tasks.data import DataSourceError
from tasks.series import (
    SeriesError,
    Transform,
    baselines,
    fit_transform,
    ingest_series,
    load_series,
    next_step_windows,
    parse_series,
    read_series,
    read_windows,
    window_series,
    windows,
)


def months(n, start=1949):
    return [f"{start + i // 12}-{i % 12 + 1:02d}" for i in range(n)]


@pytest.mark.parametrize(
    ("ms", "vals", "match"),
    [
        (["1949-01", "1949-03"], ["1", "2"], r"row 2: month 1949-03 does not follow 1949-01"),
        (["1949-01", "1949-01"], ["1", "2"], r"row 2: month 1949-01 repeats"),
        (["1949-01", "49-02"], ["1", "2"], r"row 2: month '49-02' is not YYYY-MM"),
        (["1949-01", "1949-13"], ["1", "2"], r"row 2: month '1949-13' is not YYYY-MM"),
        (["1949-01", "1949-02"], ["1", "abc"], r"row 2: value 'abc' is not a number"),
        (["1949-01", "1949-02"], ["-3", "2"], r"row 1: value '-3' must be a positive number"),
        (["1949-01", "1949-02"], ["nan", "2"], r"row 1: value 'nan' must be a positive"),
        ([], [], r"no data rows"),
    ],
)
def test_bad_series_are_rejected_with_the_row(ms, vals, match):
    with pytest.raises(SeriesError, match=match):
        parse_series(ms, vals, "f.csv")


def test_year_boundary_is_consecutive():
    assert parse_series(["1949-12", "1950-01"], ["1", "2.5"], "f.csv").tolist() == [1.0, 2.5]


def test_bad_csv_files(tmp_path):
    """Files that are not a month,value CSV fail with their name and what to fix."""
    cols = ("Month", "Passengers")
    path = tmp_path / "series.csv"
    cases = [
        ("", "is empty"),
        ("Month,Count\n1949-01,112\n", "lacks column.*Passengers"),
        ('Month,Passengers\n1949-01,"1\n12"\n1949-02,5\n', "row 1: value '1.{1,2}12' is not"),
        ("Month,Passengers\n1949-01,112,7\n", "record 1 .* has 3 fields"),
        ("Month,Passengers\n" + "".join(f"{m},{100 + i}\n" for i, m in enumerate(months(143))),
         "143 months, expected 144"),
    ]  # fmt: skip
    for text, match in cases:
        path.write_text(text)
        with pytest.raises((DataSourceError, SeriesError), match=match):
            load_series(path, cols, 144)
    path.write_bytes(b"Month,Passengers\n1949-01,1\xff2\n")
    with pytest.raises(SeriesError, match="row 1: value '1\ufffd2' is not a number"):
        load_series(path, cols, None)


def test_notebook_windows_by_hand():
    s = np.arange(10.0)
    x, y, t = windows(s, 0, 7, 4)  # range(len - lookback) windows of s[0:7]
    assert x.tolist() == [[0, 1, 2, 3], [1, 2, 3, 4], [2, 3, 4, 5]]
    assert y.tolist() == [[1, 2, 3, 4], [2, 3, 4, 5], [3, 4, 5, 6]]
    assert t.tolist() == [4, 5, 6]
    assert next_step_windows(s, np.array([7, 9]), 3).tolist() == [[4, 5, 6], [6, 7, 8]]


def test_baselines_by_hand():
    y = np.arange(1.0, 31.0) ** 1.5  # 30 months, 24 for training
    b = baselines(y, 24)
    c = np.mean([y[i] - y[i - 12] for i in range(12, 24)])
    assert b["naive"].tolist() == [y[t - 1] for t in range(24, 30)]
    assert b["seasonal_naive"].tolist() == [y[t - 12] for t in range(24, 30)]
    np.testing.assert_allclose(b["drift"], [y[t - 12] + c for t in range(24, 30)])


def test_transform_round_trip():
    y = np.exp(np.linspace(4.5, 6.0, 60)) * (1 + 0.2 * np.sin(np.arange(60)))
    tr = fit_transform(y, 48, log=True, lag=12, scale=True)
    s = tr.forward(y)
    assert np.isnan(s[:12]).all() and abs(s[12:48].mean()) < 1e-9 and abs(s[12:48].std() - 1) < 1e-9
    t = np.arange(12, 60)
    np.testing.assert_allclose(tr.invert(s[t], t, y), y[t])
    assert Transform().forward(y).tolist() == y.tolist()


def test_transform_with_first_differences_round_trip():
    y = np.exp(np.linspace(4.5, 6.0, 60)) * (1 + 0.2 * np.sin(np.arange(60)))
    tr = fit_transform(y, 48, log=True, lag=12, scale=False, diff=1)
    s, z = tr.forward(y), np.log(y)
    assert tr.first == 13 and np.isnan(s[:13]).all() and np.isfinite(s[13:]).all()
    t = 30  # the airline model's d=1, D=1 difference of log y, by hand
    assert s[t] == pytest.approx(z[t] - z[t - 12] - z[t - 1] + z[t - 13])
    scaled = fit_transform(y, 48, log=True, lag=12, scale=True, diff=1)
    d = scaled.forward(y)[13:48]
    assert abs(d.mean()) < 1e-9 and abs(d.std() - 1) < 1e-9  # fitted on the training part
    ts = np.arange(13, 60)
    np.testing.assert_allclose(scaled.invert(scaled.forward(y)[ts], ts, y), y[ts])
    plain = Transform(diff=1)  # no log, no seasonal lag: plain first differences
    np.testing.assert_allclose(plain.forward(y)[1:], np.diff(y))
    np.testing.assert_allclose(plain.invert(np.diff(y), np.arange(1, 60), y), y[1:])


def test_highway_is_causal_and_the_last_step_loss_reads_only_it():
    import torch

    from models.forecaster import LSTMForecaster
    from tasks.train.airline import ForecastRecipe

    torch.manual_seed(0)
    m = LSTMForecaster(1, 4, highway=5)
    x = torch.randn(2, 8, 1)
    later = x.clone()
    later[:, 5:] += 3.0  # change steps 5.. only
    with torch.no_grad():
        a, b = m(x), m(later)
    assert torch.equal(a[:, :5], b[:, :5]) and not torch.allclose(a[:, 5:], b[:, 5:])
    with torch.no_grad():  # zero LSTM weights: its part is the same for any input
        m.lstm.weight_hh_l0.zero_(), m.lstm.weight_ih_l0.zero_()
        gap = m(later)[:, -1, 0] - m(x)[:, -1, 0]
    w = m.highway.weight[0, 0].detach()  # taps over the last 5 steps, oldest first
    assert torch.allclose(gap, 3.0 * w[-3:].sum().expand(2), atol=1e-5)  # steps 5, 6, 7

    cfg = load_config("airline", "best").train
    xs, ys = np.random.default_rng(0).normal(size=(2, 3, 6, 1)).astype(np.float32)
    recipe = ForecastRecipe(cfg, None, (xs, ys))
    assert recipe.model.highway.kernel_size == (6,)  # the window's length
    idx = torch.arange(3)
    loss, n = recipe.loss(recipe.model, idx)
    with torch.no_grad():
        out = recipe.model(torch.from_numpy(xs))
    expected = torch.mean((out[:, -1] - torch.from_numpy(ys)[:, -1]) ** 2)
    assert n == 3 and loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_real_series_and_notebook_shapes(data_dir):
    series = ingest_series.fn("airline", "airline_passengers", "airline-passengers.csv", 144)
    ms, y = read_series(series)
    assert len(y) == 144 and ms[0] == "1949-01" and ms[-1] == "1960-12" and y[0] == 112
    cfg = load_config("airline", "parity").windows
    wins = window_series.fn("airline", series, cfg)
    x_tr, y_tr, _ = read_windows(wins, "train")
    x_te, y_te, t_te = read_windows(wins, "test")
    assert x_tr.shape == y_tr.shape == (111, 4, 1) and x_te.shape == y_te.shape == (25, 4, 1)
    assert x_te[0, :, 0].tolist() == y[115:119].tolist() and t_te[0] == 119
    b = baselines(y, 115)
    rm = {k: math.sqrt(np.mean((v - y[115:]) ** 2)) for k, v in b.items()}
    assert round(rm["naive"], 1) == 52.5 and round(rm["seasonal_naive"], 1) == 46.1


def test_airline_flow_metrics_baselines_model(prefect_server, data_dir):
    from flows.airline import airline
    from flows.retrain import retrain

    small = ["train.epochs=30", "train.eval_every=10"]
    run_id = airline(profile="quick", overrides=small)
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    m = c.get_run(run_id).data.metrics
    assert round(m["naive_test_rmse"], 1) == 52.5
    assert round(m["seasonal_naive_test_rmse"], 1) == 46.1
    assert m["drift_test_rmse"] < m["seasonal_naive_test_rmse"]
    assert all(math.isfinite(m[k]) for k in ("train_rmse", "test_rmse", "test_rmse_next"))
    steps = [h.step for h in c.get_metric_history(run_id, "test_rmse")]
    assert steps[:4] == [0, 10, 20, 29]  # epoch 0, every eval_every, the last
    hist = [h.value for h in c.get_metric_history(run_id, "train_rmse")][:4]
    assert hist[-1] < hist[0]  # training lowers the train RMSE
    assert "forecast.png" in {a.path for a in c.list_artifacts(run_id)}
    champ = c.get_model_version_by_alias("airline", "champion")
    assert champ.run_id == run_id
    again = retrain(pipeline="airline", profile="quick", overrides=small)
    assert again["decision"] == "no new data"
