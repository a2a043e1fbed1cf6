"""Character-LM training speed: seqflow's scratch cells vs the notebook's formulation vs
torch.nn, characters per second, same data, same parameters, one run.

notebook: the per-step cell (one matmul per gate and side inside the time loop, autograd
          backward) and the output layer applied step by step, then stacked (RNNLMScratch).
seqflow:  CharLM(kind): input projections of all steps in one product, the recurrence in the
          compiled kernels (models/cells.c: all steps of a block of rows per call, hand-written
          backward summing the weight gradients), the output layer once.
seqflow (torch ops): the same with SEQFLOW_KERNELS=0: the recurrence as per-step torch ops
          with the hand-written backward (models/recurrence.py), what runs without a compiler.
torch.nn: CharLM("rnn" | "lstm" | "gru"), the library layers.

Two measures on the parity windows (batch 1024 of 32 + 1 characters of Don Quijote, hidden 32):
the recurrent layer alone (forward + backward, the issue's target: seqflow's cells >= 2x the
notebook's formulation) and a whole training step (forward, cross-entropy, backward, clip at
1, Adadelta: the one-hot input, the output layer and the optimizer cost the same on all
sides). Before timing, checks that the notebook formulation and seqflow give the same loss
and gradients on the same parameters. --batch sets the batch size (the notebook's: 1024).
Writes bench/out/charlm.json. On a CUDA machine pass --device cuda.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("SEQFLOW_MIRROR", str(REPO.parent / "shared" / "datasets"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from flows.config import load_config  # noqa: E402
from models import kernels  # noqa: E402
from models.charlm import CharLM, step_reference  # noqa: E402
from tasks.chars import encode_chars, ingest_book, window_chars  # noqa: E402
from tasks.engine.settings import use_mirror  # noqa: E402
from tasks.train.charlm import read_split  # noqa: E402

CELLS = ("rnn", "lstm", "gru")
FORMULATIONS = ("notebook", "seqflow", "seqflow (torch ops)", "torch.nn")


def notebook_logits(model: CharLM, ids: torch.Tensor) -> torch.Tensor:
    hs, _ = step_reference(model.cells[0], model.one_hot(ids))
    return torch.stack([model.output(hs[:, t]) for t in range(hs.shape[1])], 1)


def seqflow_logits(model: CharLM, ids: torch.Tensor) -> torch.Tensor:
    return model(ids)


def loss_of(logits_fn, model, batch):
    logits = logits_fn(model, batch[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


def train_speed(model, logits_fn, batches, device) -> float:
    """Characters per second over `batches` (after one warm-up step)."""
    opt = torch.optim.Adadelta(model.parameters(), lr=4.0)

    def step(batch):
        opt.zero_grad(set_to_none=True)
        loss_of(logits_fn, model, batch).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    step(batches[0])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for b in batches:
        step(b)
    sync()
    return sum(b[:, 1:].numel() for b in batches) / (time.perf_counter() - start)


def cell_speeds(kind: str, x: torch.Tensor, reps: int) -> dict[str, float]:
    """Characters per second of the recurrent layer alone, per formulation: forward and
    backward of a fixed linear function of its outputs (what the output layer would pass
    back). The formulations take turns call by call and each gets the median of its `reps`
    calls, so that this shared machine's swings in speed hit all of them alike."""
    weights = torch.randn(x.shape[0], x.shape[1], 32, device=x.device)
    runs = {}
    for formulation in FORMULATIONS:
        torch.manual_seed(0)
        model = CharLM(34, kind if formulation == "torch.nn" else f"{kind}_scratch", hidden=32)
        model = model.to(x.device)
        layer = model.rnn if formulation == "torch.nn" else model.cells[0]
        runs[formulation] = (formulation, layer)

    def run(formulation, layer):
        if formulation == "seqflow (torch ops)":
            os.environ["SEQFLOW_KERNELS"] = "0"
        try:
            out = step_reference(layer, x)[0] if formulation == "notebook" else layer(x)[0]
            (out * weights).sum().backward()
        finally:
            os.environ.pop("SEQFLOW_KERNELS", None)

    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    times = {f: [] for f in runs}
    for rep in range(reps + 1):  # the first round warms up
        for f, args in runs.items():
            sync()
            start = time.perf_counter()
            run(*args)
            sync()
            if rep:
                times[f].append(time.perf_counter() - start)
    return {f: x.shape[0] * x.shape[1] / float(np.median(t)) for f, t in times.items()}


def same_function(kind: str, batch, device, dtype=torch.float64) -> float:
    """Largest gap between the two formulations' loss and gradients (float64: seqflow's torch
    ops; float32 on CPU: its compiled kernels)."""
    torch.manual_seed(0)
    model = CharLM(34, f"{kind}_scratch", hidden=32).to(dtype).to(device)
    grads = []
    for fn in (notebook_logits, seqflow_logits):
        loss = loss_of(fn, model, batch)
        grads.append([loss.detach(), *torch.autograd.grad(loss, list(model.parameters()))])
    return max(float((a - b).abs().max()) for a, b in zip(*grads, strict=True))


def parity_windows() -> np.ndarray:
    use_mirror(os.environ["SEQFLOW_MIRROR"])
    cfg = load_config("charlm", "parity")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SEQFLOW_DATA_DIR"] = tmp
        book = ingest_book.fn("charlm", cfg.data.dataset, cfg.data.file)
        chars = encode_chars.fn("charlm", book, cfg.data.notebook_text)
        return read_split(window_chars.fn("charlm", chars, cfg.windows).path, "train")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--cell-reps", type=int, default=21, help="timed calls per cell formulation")
    args = ap.parse_args()
    device = torch.device(args.device)
    train = torch.from_numpy(parity_windows().astype(np.int64))
    bs = args.batch
    batches = [train[i * bs : (i + 1) * bs].to(device) for i in range(args.steps)]
    rows = {}
    for kind in CELLS:
        gap = same_function(kind, batches[0][:64], device)
        gap32 = same_function(kind, batches[0][:64], device, torch.float32)
        speeds = {}
        for name, model_kind, fn in [("notebook", f"{kind}_scratch", notebook_logits),
                                     ("seqflow", f"{kind}_scratch", seqflow_logits),
                                     ("torch.nn", kind, seqflow_logits)]:  # fmt: skip
            torch.manual_seed(0)
            model = CharLM(34, model_kind, hidden=32).to(device)
            speeds[name] = train_speed(model, fn, batches, device)
        x = F.one_hot(batches[0][:, :-1], 34).float()
        cells = cell_speeds(kind, x, args.cell_reps)
        rows[kind] = {
            "cell_chars_per_sec": cells,
            "cell_seqflow_vs_notebook": cells["seqflow"] / cells["notebook"],
            "cell_seqflow_torch_ops_vs_notebook": cells["seqflow (torch ops)"] / cells["notebook"],
            "chars_per_sec": speeds,
            "seqflow_vs_notebook": speeds["seqflow"] / speeds["notebook"],
            "seqflow_vs_torch_nn": speeds["seqflow"] / speeds["torch.nn"],
            "max_gap_loss_and_grads_float64": gap,
            "max_gap_loss_and_grads_float32": gap32,
        }
        print(kind, json.dumps(rows[kind]), flush=True)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {device}, "
        f"kernels {'on' if kernels.library() else 'off'}",
        "date": time.strftime("%Y-%m-%d"),
        "steps": args.steps,
        "cell_reps": args.cell_reps,
        "batch": [bs, 33],
        "hidden": 32,
        "cells": rows,
    }
    out = REPO / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / f"charlm-{device.type}-batch{bs}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
