"""Parity epoch time of the word2vec training loop on whatever device is present.

    python bench/gpu_epoch.py STAGES   # STAGES holds vocab/<key>/ and windows/<key>/ outputs

The GPU machine's image has PyTorch but not Prefect; the training loop does not use Prefect,
so when it is missing a pass-through `task` decorator stands in for the import only.
"""

import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

try:
    import prefect  # noqa: F401
except ImportError:  # import-only stand-in; nothing here runs as a Prefect task
    shim = types.ModuleType("prefect")
    shim.task = lambda *a, **k: lambda fn: fn
    shim.get_run_logger = None
    policies = types.ModuleType("prefect.cache_policies")
    policies.NO_CACHE = None
    sys.modules.update({"prefect": shim, "prefect.cache_policies": policies})

import torch  # noqa: E402

from flows.config import load_config  # noqa: E402
from tasks.engine.stage import StageOutput, read_manifest  # noqa: E402
from tasks.train.word2vec import train_word2vec  # noqa: E402
from tasks.vocab import read_vocab  # noqa: E402
from tasks.windows import read_pairs  # noqa: E402


def stage(root: Path, name: str) -> StageOutput:
    folder = next(p for p in (root / name).iterdir() if (p / "manifest.json").exists())
    m = read_manifest(folder)
    return StageOutput(name, str(folder), m["key"], m["fingerprint"], True, m["stats"])


def main() -> None:
    root = Path(sys.argv[1])
    _, counts = read_vocab(stage(root, "vocab"))
    pairs = read_pairs(stage(root, "windows"))
    cfg = load_config("word2vec", "parity").train
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"device {name}, torch {torch.__version__}, {len(pairs)} pairs", flush=True)
    train_word2vec(pairs, counts, cfg.model_copy(update={"epochs": 1}))  # warm-up
    for label, update in (("parity", {}), ("parity-1024", {"batch_size": 1024, "lr": 0.01})):
        start = time.perf_counter()
        _, fitted = train_word2vec(pairs, counts, cfg.model_copy(update=update))
        total = time.perf_counter() - start
        print(
            f"{label}: batch {cfg.model_copy(update=update).batch_size}, {cfg.epochs} epochs in "
            f"{total:.2f}s = {total / cfg.epochs:.2f}s/epoch, {fitted.per_sec:.0f} pairs/s, "
            f"final loss {fitted.train_loss[-1]:.4f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
