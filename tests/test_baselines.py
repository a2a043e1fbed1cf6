"""The forecaster's classic baselines (tasks/baselines.py): fitted on the training periods only,
the airline model's published figure, and the comparison table every forecaster run logs."""

import csv
import re

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from flows import cli
from tasks import baselines
from tests.conftest import MIRROR

AIRLINE = MIRROR / "airline_passengers" / "airline-passengers.csv"
CARS = MIRROR / "byo" / "monthly_car_sales" / "monthly-car-sales.csv"


def passengers() -> np.ndarray:
    with AIRLINE.open() as f:
        return np.array([float(r["Passengers"]) for r in csv.DictReader(f)])


def test_the_airline_model_scores_its_known_figure_on_the_29_test_months():
    y = passengers()
    got = baselines.compare(y, 115, 12)  # the course split: int(144 * 0.8)
    assert got["sarima"]["one_step_rmse"] == pytest.approx(15.93, abs=0.01)
    assert got["seasonal_naive"]["one_step_rmse"] == pytest.approx(46.08, abs=0.01)
    assert len(got["holt_winters"]["one_step"]) == 29


@pytest.mark.parametrize("name", baselines.NAMES)
def test_no_test_month_reaches_a_fit(name):
    """Any change to the test months leaves the fitted parameters, the whole-horizon forecast
    and the first test month's one-step forecast exactly as they were."""
    y = passengers()
    changed = y.copy()
    changed[115:] = changed[115:] * 3 + np.arange(29) * 50
    fit = getattr(baselines, name)
    a, b = fit(y, 115, 12), fit(changed, 115, 12)
    assert a["params"] == b["params"]
    np.testing.assert_array_equal(a["horizon"], b["horizon"])
    assert a["one_step"][0] == b["one_step"][0]
    assert not np.array_equal(a["one_step"][1:], b["one_step"][1:])  # later: the actual values


def test_a_series_too_short_for_a_seasonal_fit_says_so_and_the_rest_go_on():
    y = passengers()[:40]
    got = baselines.compare(y, 20, 12)
    assert "fewer than two seasons" in got["sarima"]["error"]
    assert "error" in got["holt_winters"] and "one_step_rmse" in got["seasonal_naive"]
    text = baselines.table(1.0, got)
    assert "| sarima | not fitted: 20 training periods" in text


@pytest.mark.usefixtures("prefect_server")
def test_a_forecaster_run_logs_the_baselines_beside_its_own_forecast(data_dir, capsys):
    code = cli.main(["run", "forecast", "--data", str(CARS), "--set", "data.value_column=Sales",
                     "--profile", "quick", "--set", "train.epochs=5",
                     "--set", "train.eval_every=2"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    (run,) = c.search_runs([c.get_experiment_by_name("airline").experiment_id])
    m = run.data.metrics
    table = c.download_artifacts(run.info.run_id, "comparison.md", str(data_dir))
    text = open(table).read()
    lines = [ln for ln in text.splitlines() if ln.startswith("| ") and "---" not in ln]
    rows = {r[0]: r[1:] for r in (re.split(r"\s*\|\s*", ln.strip("| ")) for ln in lines)}
    assert set(rows) == {"forecast", "**this model**", *baselines.NAMES}
    assert rows["**this model**"][0] == f"**{m['test_rmse_next']:.2f}**"
    for name in baselines.NAMES:
        assert rows[name][0] == f"{m[f'baseline_{name}_rmse']:.2f}"
        assert rows[name][1] == f"{m[f'baseline_{name}_horizon_rmse']:.2f}"
    # the same seasonal naive forecast as the run's own naive baselines (tasks/series.py)
    assert m["baseline_seasonal_naive_rmse"] == pytest.approx(m["seasonal_naive_test_rmse"])
