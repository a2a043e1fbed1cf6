"""The airline-passengers forecasting pipeline (Laboratorio 3, part 4).

ingest (validated monthly CSV) -> windows (Parquet) -> train the LSTM forecaster
       -> RMSE on train and test (the notebook's), one-step-ahead test RMSE beside three
          baselines on the same months, forecast plot, the model registered as `airline`
"""

import hashlib
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from flows.config import AirlineConfig, flatten  # noqa: E402
from flows.pipelines import resolve, run_tags  # noqa: E402
from models.forecaster import LSTMForecaster  # noqa: E402
from tasks.engine import records, tracking  # noqa: E402
from tasks.engine.parity import Check, check_parity  # noqa: E402
from tasks.engine.stage import run_logger  # noqa: E402
from tasks.series import (  # noqa: E402
    baselines,
    ingest_series,
    read_next,
    read_series,
    read_transform,
    read_windows,
    rmse,
    window_series,
)
from tasks.train.airline import predict, train_forecaster  # noqa: E402

PIPELINE = "airline"
PRIMARY_METRIC = ("test_rmse", "min")


def fingerprint(config: AirlineConfig) -> str:
    from tasks.engine.catalog import DATASETS

    d = config.data
    parts = [d.dataset, d.file, DATASETS[d.dataset].file(d.file).sha256]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


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
        return self.tr.invert(predict(model, self.next_x)[:, -1, 0], self.next_t, self.y)

    def train_fit(self, model) -> tuple[np.ndarray, np.ndarray]:
        x, _, t = self.split["train"]
        return t, self.tr.invert(predict(model, x)[:, -1, 0], t, self.y)


def forecast_figure(ev: Evaluator, model, base: dict):
    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(ev.y, color="black", label="passengers")
    t, fit = ev.train_fit(model)
    ax.plot(t, fit, color="tab:red", label="train fit (last step of each window)")
    ax.plot(ev.next_t, ev.next_step(model), color="tab:green", label="test, one step ahead")
    n_train = len(ev.y) - len(base["drift"])
    ax.plot(np.arange(n_train, len(ev.y)), base["drift"], ":", color="tab:gray",
            label="seasonal naive + drift")  # fmt: skip
    ax.axvline(n_train - 0.5, color="tab:gray", lw=0.8)
    ax.set_xlabel("month index")
    ax.set_ylabel("passengers (thousands)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@task(name="train", cache_policy=NO_CACHE)
def train_task(config: AirlineConfig, series, wins, run_id: str) -> dict:
    cfg = config.train
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    model = LSTMForecaster(1, cfg.hidden, cfg.n_layers, cfg.dropout)
    ev = Evaluator(series, wins)
    x, y, _ = ev.split["train"]

    def on_eval(epoch: int, tr: float, te: float) -> None:
        tracking.log_metrics(run_id, {"train_rmse": tr, "test_rmse": te}, step=epoch)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of 8 x 4 steps: more threads only add overhead
    try:
        hist = train_forecaster(model, (x, y), cfg, ev, on_eval)
    finally:
        torch.set_num_threads(threads)
    run_logger().info("trained %d epochs in %.1fs: train RMSE %.2f, test RMSE %.2f", cfg.epochs,
                      hist.seconds, hist.train_rmse[-1], hist.test_rmse[-1])  # fmt: skip
    return {"model": model, "hist": hist, "evaluator": ev}


@flow(name=PIPELINE)
def airline(
    config: AirlineConfig | None = None,
    profile: str | None = None,
    overrides: list[str] | None = None,
) -> str:
    """Returns the MLflow run id."""
    config = resolve(PIPELINE, config, profile, overrides)
    d = config.data
    tags = run_tags(fingerprint(config))
    with tracking.pipeline_run(PIPELINE, config.profile, flatten(config), tags) as run_id:
        series = ingest_series(PIPELINE, d.dataset, d.file, d.expected_rows)
        wins = window_series(PIPELINE, series, config.windows)
        stages = [series, wins]
        tracking.log_stages(run_id, stages)
        out = train_task(config, series, wins, run_id)
        model, ev, hist = out["model"], out["evaluator"], out["hist"]
        n_train = wins.stats["n_train"]
        base = baselines(ev.y, n_train)
        test_y = ev.y[n_train:]
        nxt = ev.next_step(model)
        metrics = {
            "train_rmse": hist.train_rmse[-1],
            "test_rmse": hist.test_rmse[-1],
            "test_rmse_next": rmse(nxt[-len(test_y) :], test_y),
            "naive_test_rmse": rmse(base["naive"], test_y),
            "seasonal_naive_test_rmse": rmse(base["seasonal_naive"], test_y),
            "drift_test_rmse": rmse(base["drift"], test_y),
            "train_seconds": hist.seconds,
        }
        tracking.log_metrics(run_id, metrics, step=config.train.epochs)
        fig = forecast_figure(ev, model, base)
        tracking.log_figure(run_id, fig, "forecast.png")
        plt.close(fig)
        tracking.log_text(run_id, ev.tr.to_json(), "transform.json")
        example = ev.split["test"][0][:1]
        reg = tracking.register_task(run_id, model, PIPELINE, example)
        metrics["model_version"] = reg["version"]
        record = records.pipeline_record(PIPELINE, config.profile, run_id,
                                         tracking.run_link(run_id), stages, metrics)  # fmt: skip
        records.publish(f"{PIPELINE}-run", record, f"{PIPELINE} {config.profile}: run record")
        if config.profile == "parity":
            got = {f"{m}@{e}": v for m, vals in (("train_rmse", hist.train_rmse),
                                                ("test_rmse", hist.test_rmse))
                   for e, v in zip(hist.epochs, vals, strict=True)}  # fmt: skip
            got |= {"final train_rmse": hist.train_rmse[-1], "final test_rmse": hist.test_rmse[-1]}
            check_parity(run_id, PIPELINE, PARITY, got, config.strict_parity)
    return run_id


# The notebook's printed RMSEs (4 decimals) and its graded thresholds (Laboratorio 3, part 4).
PARITY = [
    Check("train_rmse@0", 254.2507, tol=5e-5),
    Check("test_rmse@0", 449.1029, tol=5e-5),
    Check("train_rmse@100", 152.7753, tol=5e-5),
    Check("test_rmse@100", 337.9672, tol=5e-5),
    Check("final train_rmse", 22.0, "<"),
    Check("final test_rmse", 70.0, "<"),
]


@task(name="score", cache_policy=NO_CACHE)
def score(config: AirlineConfig, version: int | str) -> float:
    """The notebook's test RMSE of registered model `version` on this config's test windows."""
    d = config.data
    series = ingest_series.fn(PIPELINE, d.dataset, d.file, d.expected_rows)
    wins = window_series.fn(PIPELINE, series, config.windows)
    return Evaluator(series, wins).window_rmse(tracking.load_model(PIPELINE, version), "test")
