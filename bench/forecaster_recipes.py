"""Forecaster recipes against the SARIMA airline model, chosen on validation only.

Each candidate (the `best` profile with overrides) is trained on the course series' training
months less the last 12 and scored one step ahead on those 12 (val, the tuning split,
ValidationEvaluator), for seeds 2023 (the profiles' own) and 0..4; the SARIMA airline model
is fitted and scored on the same split. The candidate with the lowest mean val RMSE is the
recipe; every candidate's one-step test RMSE (the 29 test months, trained on all 115
training months) is printed beside it, read after the choice. Results: bench/RESULTS.md,
"Forecaster `best` above SARIMA".

    .venv/bin/python bench/forecaster_recipes.py [--seeds 6]
"""

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("SEQFLOW_MIRROR", str(REPO.parent / "shared" / "datasets"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from flows.config import load_config  # noqa: E402
from tasks import baselines  # noqa: E402
from tasks.engine.settings import use_mirror  # noqa: E402
from tasks.runtime.loop import Plan  # noqa: E402
from tasks.runtime.trainer import fit  # noqa: E402
from tasks.series import ingest_series, rmse, window_series  # noqa: E402
from tasks.train.airline import Evaluator, ForecastRecipe, ValidationEvaluator  # noqa: E402

OLD = ["windows.lookback=12", "windows.diff=0", "train.hidden=16", "train.highway=false",
       "train.loss_on=window"]  # fmt: skip  # `best` before this bench
CANDIDATES = {
    "old best (seasonal diff, lookback 12)": OLD,
    "+ first differences": OLD[:1] + OLD[2:],
    "+ lookback 24": OLD[2:],
    "+ highway, last-step loss, hidden 16": ["train.hidden=16"],
    "+ highway, last-step loss, hidden 8 (best)": [],
    "+ highway, last-step loss, hidden 32": ["train.hidden=32"],
}


def score(overrides: list[str], seed: int) -> tuple[float, float]:
    cfg = load_config("airline", "best", [*overrides, f"train.seed={seed}"])
    series = ingest_series.fn("airline", cfg.data.dataset, cfg.data.file, 144)
    wins = window_series.fn("airline", series, cfg.windows)
    val = ValidationEvaluator(series, wins, 12)
    _, fitted = fit(ForecastRecipe(cfg.train, val, val.train), Plan.of(cfg.train, progress=False))
    ev = Evaluator(series, wins)
    recipe, _ = fit(ForecastRecipe(cfg.train, ev), Plan.of(cfg.train, progress=False))
    n_train = wins.stats["n_train"]
    nxt = ev.next_step(recipe.model)
    return fitted.series("val_rmse")[-1], rmse(nxt[-(144 - n_train) :], ev.y[n_train:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=6)
    args = ap.parse_args()
    use_mirror(os.environ["SEQFLOW_MIRROR"])
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SEQFLOW_DATA_DIR"] = tmp
        series = ingest_series.fn("airline", "airline_passengers", "airline-passengers.csv", 144)
        from tasks.series import read_series

        y = read_series(series)[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sar_val = baselines.compare(y[:115], 103, 12)["sarima"]["one_step_rmse"]
            sar_test = baselines.compare(y, 115, 12)["sarima"]["one_step_rmse"]
        print(f"| recipe | val RMSE, mean of {args.seeds} seeds (min-max) | test one-step, "
              "mean (min-max) | seed 2023 test |")  # fmt: skip
        print("|---|---|---|---|")
        print(f"| SARIMA(0,1,1)(0,1,1)12 on logs | {sar_val:.2f} | {sar_test:.2f} | — |")
        rows = {}
        for name, over in CANDIDATES.items():
            got = np.array([score(over, s) for s in [2023, *range(args.seeds - 1)]])
            rows[name] = got
            v, t = got[:, 0], got[:, 1]
            print(f"| {name} | {v.mean():.2f} ({v.min():.2f}-{v.max():.2f}) | {t.mean():.2f} "
                  f"({t.min():.2f}-{t.max():.2f}) | {t[0]:.2f} |", flush=True)  # fmt: skip
        chosen = min(rows, key=lambda k: rows[k][:, 0].mean())
        print(f"\nchosen on validation: {chosen}")


if __name__ == "__main__":
    main()
