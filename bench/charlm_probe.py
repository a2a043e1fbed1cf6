"""charlm recipes compared per second of training, on validation only.

Each candidate (the `best` profile with overrides) trains on the `best` windows less the
validation block that `seqflow tune charlm` holds out (the last 10% of the training windows,
whole training chapters), for `--seconds` of wall time; its val_ppl is printed every
`--every` steps with the elapsed seconds. The test windows are never read. This is how the
`best` recipe's kind, width and batch were chosen (bench/RESULTS.md, "charlm `best` ≤ 3.0").

    .venv/bin/python bench/charlm_probe.py [--seconds 300] [--every 100] [--only NAME]
"""

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("SEQFLOW_MIRROR", str(REPO.parent / "shared" / "datasets"))

import torch  # noqa: E402

from flows.charlm import VALIDATION_SHARE, tune_stages  # noqa: E402
from flows.config import load_config  # noqa: E402
from tasks.chars import read_chars  # noqa: E402
from tasks.engine.accel import autocast  # noqa: E402
from tasks.engine.settings import use_mirror  # noqa: E402
from tasks.train.charlm import CharRecipe, carve_validation, perplexity, read_split  # noqa: E402

# a probe is cut short: constant lr, no validation block of the profile's own on top, fp32
# unless a candidate says otherwise
CONSTANT = ["train.schedule=constant", "train.warmup=0", "train.validation_share=0",
            "windows.stride=128", "train.precision=fp32"]  # fmt: skip
CANDIDATES = {
    "gru 256x2, batch 32, lr 3e-3, dropout 0.1 (the old best)": [
        'train.kinds=["gru"]', "train.hidden=256", "train.dropout=0.1", *CONSTANT],
    "lstm 512x2, batch 64, lr 2e-3, dropout 0.25": [
        "train.batch_size=64", "train.lr=2e-3", "train.dropout=0.25", "train.weight_drop=0",
        *CONSTANT],
    "lstm 512x2, batch 32, lr 3e-3, dropout 0.25 (best's kind, width, batch and lr)": [
        "train.dropout=0.25", "train.weight_drop=0", *CONSTANT],
    "lstm 512x2, batch 32, lr 3e-3, dropout 0.25, bf16 autocast (best's precision)": [
        "train.dropout=0.25", "train.weight_drop=0", *CONSTANT, "train.precision=bf16"],
}  # fmt: skip


def probe(overrides: list[str], seconds: float, every: int) -> None:
    config = load_config("charlm", "best", overrides)
    _, chars, wins = tune_stages(config)
    vocab, _ = read_chars(chars)
    train, valid = carve_validation(read_split(wins.path, "train"), VALIDATION_SHARE, 0)
    recipe = CharRecipe(config.train.kinds[0], train, valid, len(vocab), config.train,
                        held="val")  # fmt: skip
    model, step, start, epoch = recipe.model, 0, time.perf_counter(), 0
    while True:
        recipe.start_epoch(epoch)
        for batch in recipe.batches(epoch):
            model.train()
            with autocast(recipe.device, config.train.precision):  # as the runtime's loop
                recipe.train_step(lambda b: recipe.loss(model, b), batch, 1.0)
            step += 1
            if step % every == 0:
                elapsed = time.perf_counter() - start
                ppl = perplexity(model, valid, 256, recipe.device)
                print(f"  step {step:5d}  epoch {step * len(batch) / len(train):5.2f}  "
                      f"{elapsed:5.0f} s  val_ppl {ppl:.3f}", flush=True)  # fmt: skip
                if elapsed >= seconds:
                    return
        epoch += 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--only", help="run the candidates whose name contains this")
    args = ap.parse_args()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    use_mirror(os.environ["SEQFLOW_MIRROR"])
    for name, overrides in CANDIDATES.items():
        if args.only and args.only not in name:
            continue
        print(name, flush=True)
        probe(overrides, args.seconds, args.every)


if __name__ == "__main__":
    main()
