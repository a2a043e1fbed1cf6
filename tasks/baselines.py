"""The classic forecasts a forecaster has to beat, each fitted on the training periods only and
scored on the same test periods: one step ahead (each test period from the actual values
before it, parameters fixed at their training fit) and over the whole horizon (all test
periods from the end of training).

seasonal_naive: y[t - season]; sarima: the airline model, SARIMA(0,1,1)(0,1,1)[season] on
log values (raw values when some are not positive); holt_winters: additive trend,
multiplicative season (additive when some values are not positive). statsmodels fits both.
"""

import warnings

import numpy as np

from tasks.series import baselines as naive_forecasts
from tasks.series import rmse

NAMES = ("seasonal_naive", "sarima", "holt_winters")


def seasonal_naive(y: np.ndarray, n_train: int, season: int) -> dict:
    t = np.arange(n_train, len(y))
    last = y[n_train - season : n_train]  # the last training season, repeated
    one_step = naive_forecasts(y, n_train, season)["seasonal_naive"]
    return {"one_step": one_step, "horizon": last[(t - n_train) % season], "params": {}}


def sarima(y: np.ndarray, n_train: int, season: int) -> dict:
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    log = bool((y > 0).all())
    f, inv = (np.log, np.exp) if log else ((lambda v: v), (lambda v: v))
    seasonal = (0, 1, 1, season) if season > 1 else (0, 0, 0, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' convergence and frequency notes
        fit = SARIMAX(f(y[:n_train]), order=(0, 1, 1), seasonal_order=seasonal).fit(disp=False)
        applied = fit.apply(f(y))  # the training fit's parameters, filtered over every period
        one = applied.get_prediction(start=n_train, end=len(y) - 1).predicted_mean
        horizon = fit.forecast(len(y) - n_train)
    params = dict(zip(fit.model.param_names, map(float, fit.params), strict=True))
    return {"one_step": inv(np.asarray(one)), "horizon": inv(np.asarray(horizon)),
            "params": params | {"log": log}}  # fmt: skip


def holt_winters(y: np.ndarray, n_train: int, season: int) -> dict:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    kind = "mul" if (y > 0).all() else "add"
    shape = {"trend": "add", "seasonal": kind if season > 1 else None,
             "seasonal_periods": season if season > 1 else None}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ExponentialSmoothing(y[:n_train], **shape).fit()
        p = fit.params
        known = {"initialization_method": "known", "initial_level": p["initial_level"],
                 "initial_trend": p["initial_trend"]}  # fmt: skip
        if season > 1:
            known["initial_seasonal"] = p["initial_seasons"]
        fixed = {"smoothing_level": p["smoothing_level"], "smoothing_trend": p["smoothing_trend"],
                 "optimized": False}  # fmt: skip
        if season > 1:
            fixed["smoothing_seasonal"] = p["smoothing_seasonal"]
        # the same parameters run over every period: its fitted values are one-step forecasts
        applied = ExponentialSmoothing(y, **shape, **known).fit(**fixed)
        horizon = fit.forecast(len(y) - n_train)
    keep = ("smoothing_level", "smoothing_trend", "smoothing_seasonal")
    return {"one_step": np.asarray(applied.fittedvalues)[n_train:], "horizon": np.asarray(horizon),
            "params": {k: float(p[k]) for k in keep if p.get(k) is not None}}  # fmt: skip


def compare(y: np.ndarray, n_train: int, season: int) -> dict[str, dict]:
    """{name: {one_step_rmse, horizon_rmse, params} or {error}} for each baseline. A baseline
    that cannot fit (too few periods, a fit that fails) says why instead of stopping the run."""
    y = np.asarray(y, dtype=np.float64)
    test = y[n_train:]
    out = {}
    for name, fn in (("seasonal_naive", seasonal_naive), ("sarima", sarima),
                     ("holt_winters", holt_winters)):  # fmt: skip
        if name != "seasonal_naive" and n_train < 2 * season + 2:
            out[name] = {"error": f"{n_train} training periods: fewer than two seasons"}
            continue
        try:
            got = fn(y, n_train, season)
        except Exception as err:  # statsmodels' own errors: the row says so, the run goes on
            out[name] = {"error": f"{type(err).__name__}: {err}"[:200]}
            continue
        out[name] = {"one_step_rmse": rmse(got["one_step"], test),
                     "horizon_rmse": rmse(got["horizon"], test), "params": got["params"],
                     "one_step": got["one_step"], "horizon": got["horizon"]}  # fmt: skip
    return out


def table(model_one_step: float, compared: dict, unit: str = "") -> str:
    """The comparison artifact: the model's row, then each baseline's, best one-step first."""
    lines = ["| forecast | one step ahead RMSE | whole horizon RMSE | fitted on |",
             "|---|---|---|---|",
             f"| **this model** | **{model_one_step:.2f}** | — | training periods |"]  # fmt: skip
    done = sorted((k for k, v in compared.items() if "error" not in v),
                  key=lambda k: compared[k]["one_step_rmse"])  # fmt: skip
    for name in done:
        r = compared[name]
        lines.append(f"| {name} | {r['one_step_rmse']:.2f} | {r['horizon_rmse']:.2f} | "
                     "training periods |")  # fmt: skip
    for name in (k for k, v in compared.items() if "error" in v):
        lines.append(f"| {name} | not fitted: {compared[name]['error']} | | |")
    head = f"RMSE{f' ({unit})' if unit else ''} on the test periods; lower is better.\n\n"
    return head + "\n".join(lines) + "\n"
