"""Data-parallel training for any recipe: N processes on this machine (`gloo` on CPU, `nccl`
with one GPU per rank), each building its own recipe and training on its slice of every global
batch (`Recipe.shard`). DDP averages the gradients and the loss is rescaled so that the step is
the global batch's mean: the same model as one process on the same batches. Rank 0 logs and
checkpoints; the parent process loads rank 0's final weights.

Two launchers start the same worker: `spawn` (torch.multiprocessing, the default) and
`torchrun` (`python -m torch.distributed.run --standalone --nproc-per-node N -m
tasks.runtime.ddp JOB`), which is also how to run a job by hand.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from tasks.runtime import checkpoint, loop, signals
from tasks.runtime.loop import Build, Fitted, Plan, Recipe, pick_device, resume, run_epochs

ENV = ("SEQFLOW_DATA_DIR", "SEQFLOW_MIRROR", "MLFLOW_TRACKING_URI", "SEQFLOW_KERNELS",
       "SEQFLOW_KERNEL_CACHE", "HF_HUB_OFFLINE", "NLTK_DATA")  # fmt: skip


class Forward(nn.Module):
    """The recipe's loss as a module's forward, so DDP sees (and syncs) every step."""

    def __init__(self, model: nn.Module, loss: Callable):
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, batch):
        return self.loss(self.model, batch)


@dataclass
class Job:
    """What every rank needs, as JSON (job.json; rank 0 writes result.pt beside it)."""

    build: Build
    plan: Plan
    checkpoints: str | None
    run_id: str | None
    meta: dict | None
    env: dict


def launch(build, recipe: Recipe, plan: Plan, checkpoints: Path | None, run_id, meta) -> Fitted:
    """Train on plan.nproc ranks; returns rank 0's record, its weights loaded into `recipe`."""
    if not isinstance(build, Build):
        raise ValueError(f"{recipe.name}: train.nproc={plan.nproc} needs a Build (a recipe "
                         "factory every rank can call), not a recipe")  # fmt: skip
    env = {k: os.environ[k] for k in ENV if k in os.environ}
    with tempfile.TemporaryDirectory(prefix="seqflow-ddp-") as tmp:
        job = Job(build, plan, str(checkpoints) if checkpoints else None, run_id, meta, env)
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(asdict(job), default=loop.json_default))
        (_torchrun if plan.launcher == "torchrun" else _spawn)(job_file, plan.nproc)
        result = torch.load(job_file.with_name("result.pt"), map_location="cpu", weights_only=True)
    recipe.model.load_state_dict(result["model"])
    return Fitted(**result["fitted"])


def _spawn(job_file: Path, world: int) -> None:
    import torch.multiprocessing as mp

    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.start_processes(_spawned, args=(str(job_file), world, port), nprocs=world,
                             start_method="spawn", join=False)  # fmt: skip
    try:
        while not ctx.join(timeout=0.5):
            signals.check()
    except BaseException as err:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
        for p in ctx.processes:
            p.join(10)
        if signals.pending() and not isinstance(err, signals.Interrupted):
            raise signals.Interrupted(signals.pending()) from err
        raise


def _torchrun(job_file: Path, world: int) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={world}", "-m", "tasks.runtime.ddp", str(job_file)]  # fmt: skip
    root = Path(__file__).resolve().parents[2]
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(cmd, cwd=root, env=os.environ | {"PYTHONPATH": path})
    try:
        while proc.poll() is None:
            signals.check()
            time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    if proc.returncode:
        raise RuntimeError(f"torchrun exited with {proc.returncode} (its ranks' errors are above)")


def _spawned(rank: int, job_file: str, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    worker(job_file)


def worker(job_file: str) -> None:
    """One rank (RANK, WORLD_SIZE, MASTER_ADDR/PORT from the environment, as torchrun sets)."""
    raw = json.loads(Path(job_file).read_text(), object_hook=loop.json_hook)
    job = Job(**raw | {"build": Build(**raw["build"]), "plan": Plan(**raw["plan"])})
    os.environ.update(job.env)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = pick_device(job.plan.device)
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", rank)) % torch.cuda.device_count())
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    try:
        recipe = job.build()
        where = Path(job.checkpoints) if job.checkpoints else None
        fitted, _ = resume(recipe, job.plan, where)
        net = nn.parallel.DistributedDataParallel(Forward(recipe.model, recipe.loss))
        step = partial(_step, recipe, net, rank, world)
        run_epochs(recipe, job.plan, where, job.run_id, job.meta, fitted, step, rank == 0)
        if rank == 0:
            result = {"model": recipe.model.state_dict(), "fitted": vars(fitted)}
            checkpoint.write(Path(job_file).with_name("result.pt"), result)
    finally:
        dist.destroy_process_group()


def _step(recipe: Recipe, net: nn.Module, rank: int, world: int, batch) -> tuple[torch.Tensor, int]:
    """One step of a rank on its slice of the global batch: the local mean is rescaled so that
    DDP's gradient average is the global batch's mean; the loss returned is the global
    batch's."""
    local = recipe.shard(batch, rank, world)
    n_local = recipe.count(local)
    counts = torch.tensor([float(n_local)])
    dist.all_reduce(counts)
    n_global = int(counts.item())
    loss, n = recipe.train_step(net, local, n_local * world / n_global)
    share = loss.detach().float().cpu() * (n / n_global)
    dist.all_reduce(share)
    return share, n_global


if __name__ == "__main__":  # the torchrun entry
    worker(sys.argv[1])
