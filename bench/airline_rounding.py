"""The airline parity recipe under another float ordering: how much of the graded test RMSE
(< 70) is float rounding. Runs the pipeline's own windows and recipe on the training runtime
(the `parity` profile: the notebook's CustomModelLSTM, Adam, 3,000 epochs, seeds 2023) with
`--threads N` torch threads instead of the pipeline's 1, and prints the RMSEs at epoch 200
and at the end, and the test RMSE of each of the last 100 epochs (min / median / max).

Other orderings come from the environment, set before Python starts:
    MKL_CBWR=AVX .venv/bin/python bench/airline_rounding.py
    ATEN_CPU_CAPABILITY=default .venv/bin/python bench/airline_rounding.py
and `--no-onednn` (torch.backends.mkldnn off), `--float64`. Results: bench/RESULTS.md, airline.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("SEQFLOW_MIRROR", str(REPO.parent / "shared" / "datasets"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from flows.config import load_config  # noqa: E402
from tasks.engine.settings import use_mirror  # noqa: E402
from tasks.runtime.loop import Plan  # noqa: E402
from tasks.runtime.trainer import fit  # noqa: E402
from tasks.series import ingest_series, window_series  # noqa: E402
from tasks.train.airline import Evaluator, ForecastRecipe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=None, help="default: the profile's 3,000")
    ap.add_argument("--no-onednn", action="store_true")
    ap.add_argument("--float64", action="store_true")
    args = ap.parse_args()
    use_mirror(os.environ["SEQFLOW_MIRROR"])
    torch.set_num_threads(args.threads)
    torch.backends.mkldnn.enabled = not args.no_onednn
    cfg = load_config("airline", "parity")
    if args.epochs:
        cfg.train.epochs = args.epochs
    cfg.train.eval_every = 1  # every epoch, to see the spread of the last 100
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SEQFLOW_DATA_DIR"] = tmp
        series = ingest_series.fn("airline", cfg.data.dataset, cfg.data.file, 144)
        wins = window_series.fn("airline", series, cfg.windows)
        ev = Evaluator(series, wins)
        recipe = ForecastRecipe(cfg.train, ev)  # seeded: the notebook's CustomModelLSTM
        if args.float64:
            recipe.model.double()
            recipe.x, recipe.y = recipe.x.double(), recipe.y.double()
            for split, (sx, sy, st) in ev.split.items():
                ev.split[split] = (sx.astype(np.float64), sy, st)
        start = time.perf_counter()
        _, fitted = fit(recipe, Plan.of(cfg.train, progress=False))
    at = {e: (r["train_rmse"], r["test_rmse"]) for e, r in enumerate(fitted.history)
          if "test_rmse" in r}  # fmt: skip
    last = np.array([te for _, te in list(at.values())[-100:]])
    out = {
        "threads": args.threads,
        "env": {k: os.environ[k] for k in ("MKL_CBWR", "ATEN_CPU_CAPABILITY") if k in os.environ},
        "onednn": not args.no_onednn,
        "dtype": "float64" if args.float64 else "float32",
        "epoch_200": [round(v, 4) for v in at.get(200, ())],
        "final": [round(v, 4) for v in at[max(at)]],
        "last_100_test": {"min": float(last.min()), "median": float(np.median(last)),
                          "max": float(last.max()), "share_below_70": float((last < 70).mean())},
        "seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
