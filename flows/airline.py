"""The forecaster (`seqflow run forecast`, or `airline`): the airline-passengers pipeline of
Laboratorio 3, part 4, or a series of your own (data.source, time/value columns, data.freq).

ingest (validated series at its frequency) -> windows (Parquet) -> train the LSTM forecaster
       -> RMSE on train and test (the notebook's), one-step-ahead test RMSE beside three
          baselines on the same periods (seasonal: the season length of data.freq or
          data.season), forecast plot, the model registered as `airline`
"""

import hashlib
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from flows import champion, dashboard, forecasting, recover  # noqa: E402
from flows.config import AirlineConfig  # noqa: E402
from flows.pipelines import open_run, resolve, run_tags  # noqa: E402
from tasks import baselines as classic  # noqa: E402
from tasks.engine import records, tracking  # noqa: E402
from tasks.engine.parity import Check, check_parity  # noqa: E402
from tasks.engine.stage import run_logger  # noqa: E402
from tasks.plots import legend_outside, title  # noqa: E402
from tasks.runtime.loop import Plan  # noqa: E402
from tasks.runtime.trainer import fit  # noqa: E402
from tasks.series import (  # noqa: E402
    FREQ_WORDS,
    baselines,
    ingest_own_series,
    ingest_series,
    period_index,
    period_start,
    read_own_series,
    read_series,
    rmse,
    season_length,
    window_series,
)
from tasks.train.airline import Evaluator, ForecastRecipe  # noqa: E402

PIPELINE = "airline"
PRIMARY_METRIC = ("test_rmse", "min")


def own_data(config: AirlineConfig) -> dict:
    """open_source's mapping for a series of your own: its train split whole (split by time
    in the windows stage, never carved at random)."""
    d = config.data
    return {"wanted": {"time_column": (d.time_column, ("string", "number", "time")),
                       "value_column": (d.value_column, ("number", "string"))},
            "whole": True}  # fmt: skip


def check_own(config: AirlineConfig) -> dict:
    """pipelines.check_source for this pipeline: columns, timestamps, values, duplicates and
    gaps at data.freq checked before any stage (a SourceError); the series read. The training
    part must hold more than one season (the seasonal baselines look a season back)."""
    from tasks.sources import SourceError

    d = config.data
    read = read_own_series(d, own_data(config)["wanted"])
    n_train, season = (
        int(len(read["values"]) * config.windows.train_fraction),
        season_length(d.freq, d.season),
    )
    if n_train <= season:
        raise SourceError(
            f"data.source {d.source!r}: {len(read['values'])} {FREQ_WORDS[d.freq]} periods leave "
            f"{n_train} for training, not more than one season ({season}); give a longer "
            "series, or set data.season (or windows.train_fraction)"
        )
    return read


def fingerprint(config: AirlineConfig) -> str:
    from tasks.engine.catalog import DATASETS

    d = config.data
    if d.own:
        from tasks.sources import data_fingerprint

        return data_fingerprint(d, own_data(config)["wanted"])
    parts = [d.dataset, d.file, DATASETS[d.dataset].file(d.file).sha256]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def forecast_figure(ev: Evaluator, model, base: dict, months: list[str], heading: str,
                    freq: str | None = None, what: str = "passengers"):  # fmt: skip
    """The series by month (YYYY-MM, as ingested) with the model's fits beside the drift
    baseline (heading: plots.title's); freq: your own series' labels at that frequency."""
    if freq is None:
        dates = np.array(months, dtype="datetime64[M]").astype("datetime64[D]")
    else:
        starts = [period_start(period_index(m, freq), freq) for m in months]
        dates = np.array(starts, dtype="datetime64[D]")
    fig, ax = plt.subplots(figsize=(10, 4.5), layout="constrained")
    ax.plot(dates, ev.y, color="black", label=what)
    t, fit = ev.train_fit(model)
    ax.plot(dates[t], fit, color="tab:red", label="model: train fit\n(last step of each window)")
    ax.plot(dates[ev.next_t], ev.next_step(model), color="tab:green",
            label="model: test, one step ahead")  # fmt: skip
    n_train = len(ev.y) - len(base["drift"])
    ax.plot(dates[n_train:], base["drift"], ":", color="tab:gray",
            label="baseline: seasonal naive\n+ drift")  # fmt: skip
    ax.axvline(dates[n_train], color="tab:gray", lw=0.8,
               label="first test month" if freq is None else "first test period")  # fmt: skip
    ax.set_xlim(dates[0], dates[-1])
    if freq is None:
        ax.xaxis.set_major_locator(mdates.YearLocator())
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
        ax.set(xlabel="month", ylabel="passengers (thousands)", title=heading)
    else:
        locator = mdates.AutoDateLocator()
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        unit = {"D": "day", "W": "week", "M": "month", "Q": "quarter", "Y": "year"}[freq]
        ax.set(xlabel=unit, ylabel=what, title=heading)
    legend_outside(ax)
    return fig


def series_stages(config: AirlineConfig, read: dict | None = None,
                  as_tasks: bool = True) -> list:  # fmt: skip
    """[ingest, windows] of config's series (read: check_own's, for your own data). as_tasks
    False: the plain functions (outside a flow)."""
    d, call = config.data, (lambda t: t) if as_tasks else (lambda t: t.fn)
    if d.own:
        series = call(ingest_own_series)(PIPELINE, d, read or check_own(config))
    else:
        series = call(ingest_series)(PIPELINE, d.dataset, d.file, d.expected_rows)
    return [series, call(window_series)(PIPELINE, series, config.windows)]


def tune_stages(config: AirlineConfig) -> list:
    """The stages a tuning trial reads (built once before the trials, then from cache)."""
    return series_stages(config, as_tasks=False)


TUNE_METRIC = ("val_rmse", "min")


def tune_trial(config: AirlineConfig, run_id: str, monitor) -> float:
    """One tuning trial (flows/tune.py): the forecaster trained on the training windows less
    the last season of training periods (at most a fifth of them), scored one step ahead on
    those (val_rmse, each eval_every epochs, to `monitor`). Never reads the test windows.
    Returns the last epoch's val_rmse."""
    from tasks.train.airline import ValidationEvaluator

    d = config.data
    series, wins = tune_stages(config)
    n_train = wins.stats["n_train"]
    n_val = min(season_length(d.freq, d.season), max(1, n_train // 5))
    ev = ValidationEvaluator(series, wins, n_val)
    tracking.log_metrics(run_id, {"train_windows": len(ev.train[0]), "val_windows": len(ev.val[1])})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, fitted = fit(ForecastRecipe(config.train, ev, ev.train),
                        Plan.of(config.train, progress=False), run_id=run_id,
                        monitor=monitor)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return fitted.series("val_rmse")[-1]


@task(name="train", cache_policy=NO_CACHE)
def train_task(config: AirlineConfig, ev: Evaluator, run_id: str, where) -> dict:
    """The forecaster trained by the runtime (tasks/runtime): checkpoints every
    `checkpoint_every` epochs (unset: every `eval_every`) in `where`, resumed from there."""
    cfg = config.train
    plan = Plan.of(cfg, checkpoint_every=cfg.checkpoint_every or cfg.eval_every)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batches of 8 x 4 steps: more threads only add overhead
    try:
        recipe, fitted = fit(
            ForecastRecipe(cfg, ev),
            plan,
            checkpoints=where,
            run_id=run_id,
            meta={"run_ids": [run_id]},
        )
    finally:
        torch.set_num_threads(threads)
    last = fitted.history[-1]  # the last epoch always evaluates
    run_logger().info("trained %d epochs in %.1fs: train RMSE %.2f, test RMSE %.2f", cfg.epochs,
                      fitted.seconds, last["train_rmse"], last["test_rmse"])  # fmt: skip
    return {"model": recipe.model, "fitted": fitted}


@flow(name=PIPELINE, flow_run_name=dashboard.RunName(PIPELINE))
def airline(
    config: AirlineConfig | None = None,
    profile: str | None = None,
    overrides: list[str] | None = None,
    promote: bool | None = None,
) -> str:
    """Returns the MLflow run id."""
    config = resolve(PIPELINE, config, profile, overrides)
    d = config.data
    read = check_own(config) if d.own else None  # = pipelines.check_source, read once
    season = season_length(d.freq, d.season)  # the course: 12 months
    tags = run_tags(fingerprint(config))
    with open_run(PIPELINE, config, tags) as run_id:
        stages = series_stages(config, read)
        series, wins = stages
        tracking.log_stages(run_id, stages)
        ev = Evaluator(series, wins)
        ckpt = recover.checkpoint_folder(PIPELINE, [series.fingerprint, wins.fingerprint],
                                         config.train)  # fmt: skip
        with recover.keep_model(PIPELINE, ckpt, config.train.epochs) as owned:
            out = train_task(config, ev, run_id, ckpt if owned else None)
            model, fitted = out["model"], out["fitted"]
            reg = forecasting.register_task(run_id, model, series, ev, config)
        n_train = wins.stats["n_train"]
        base = baselines(ev.y, n_train, season)
        test_y = ev.y[n_train:]
        nxt = ev.next_step(model)
        metrics = {
            "train_rmse": fitted.series("train_rmse")[-1],
            "test_rmse": fitted.series("test_rmse")[-1],
            "test_rmse_next": rmse(nxt[-len(test_y) :], test_y),
            "naive_test_rmse": rmse(base["naive"], test_y),
            "seasonal_naive_test_rmse": rmse(base["seasonal_naive"], test_y),
            "drift_test_rmse": rmse(base["drift"], test_y),
            "train_seconds": fitted.seconds,
        }
        compared = classic.compare(ev.y, n_train, season)  # fitted on the training part only
        for name, r in compared.items():
            if "error" not in r:
                metrics |= {f"baseline_{name}_rmse": r["one_step_rmse"],
                            f"baseline_{name}_horizon_rmse": r["horizon_rmse"]}  # fmt: skip
        if d.own:  # gaps filled by interpolation (data.fill_gaps), the season used
            metrics |= {"gaps_filled": series.stats["filled"], "season_length": season}
            run_logger().info(
                "%s (%s, %d periods, %d gap(s) filled): test RMSE %.4g beside seasonal naive "
                "(season %d) %.4g, naive %.4g, seasonal naive + drift %.4g", d.value_column,
                FREQ_WORDS[d.freq], len(ev.y), series.stats["filled"], metrics["test_rmse"],
                season, metrics["seasonal_naive_test_rmse"], metrics["naive_test_rmse"],
                metrics["drift_test_rmse"],
            )  # fmt: skip
        tracking.log_metrics(run_id, metrics, step=config.train.epochs)
        what = ("monthly passengers" if not d.own
                else f"{FREQ_WORDS[d.freq]} {d.value_column}")  # fmt: skip
        heading = title(f"{what} and forecasts", PIPELINE, config.profile, PIPELINE,
                        reg["version"])  # fmt: skip
        own = {"freq": d.freq, "what": d.value_column} if d.own else {}
        fig = forecast_figure(ev, model, base, read_series(series)[0], heading, **own)
        tracking.log_figure(run_id, fig, "forecast.png")
        plt.close(fig)
        tracking.log_text(run_id, ev.tr.to_json(), "transform.json")
        unit = d.value_column if d.own else "passengers"
        tracking.log_text(run_id, classic.table(metrics["test_rmse_next"], compared, unit),
                          "comparison.md")  # fmt: skip
        tracking.log_json(run_id, {k: {f: v for f, v in r.items() if f not in ("one_step",
                                                                            "horizon")}
                                   for k, r in compared.items()}, "baselines.json")  # fmt: skip
        metrics["model_version"] = reg["version"]
        record = records.pipeline_record(PIPELINE, config.profile, run_id,
                                         tracking.run_link(run_id), stages, metrics)  # fmt: skip
        records.publish(f"{PIPELINE}-run", record, f"{PIPELINE} {config.profile}: run record")
        if config.profile == "parity":
            got = {f"{m}@{e}": row[m] for e, row in enumerate(fitted.history)
                   for m in ("train_rmse", "test_rmse") if m in row}  # fmt: skip
            got |= {"final train_rmse": metrics["train_rmse"],
                    "final test_rmse": metrics["test_rmse"]}  # fmt: skip
            check_parity(run_id, PIPELINE, PARITY, got, config.strict_parity)
        champion.finish(PIPELINE, config, run_id, metrics, record, promote)
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
    series, wins = series_stages(config, as_tasks=False)
    return Evaluator(series, wins).window_rmse(tracking.load_model(PIPELINE, version), "test")
