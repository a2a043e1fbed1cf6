"""Data-parallel word2vec training (the notebook's softmax model) with DistributedDataParallel.

`seqflow run word2vec --nproc N` (= `--set train.nproc=N`) starts N processes on this machine
(torch.multiprocessing spawn; `gloo` on CPU, `nccl` with one GPU per rank). Rank r reads only
its own contiguous slice of the Parquet pair shards, shuffles it each epoch and trains on
batches of batch_size / N pairs; DDP averages the gradients, so every step sees one global batch
of batch_size pairs. Losses are reduced across ranks; only rank 0 logs to MLflow and writes the
checkpoint. `train_reference` runs the same global batches in one process: the check that DDP
trains the same model. Epochs drop the last partial batch (every rank takes the same number of
steps).
"""

import json
import math
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from prefect import task
from prefect.cache_policies import NO_CACHE

from models.word2vec import Word2Vec
from tasks.engine.stage import StageOutput, run_logger
from tasks.train.word2vec import NonFiniteLoss, TrainResult, pick_device, softmax_loss


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_range(n: int, rank: int, world: int) -> tuple[int, int]:
    """Rank r's rows [start, stop) of n: contiguous, sizes differ by at most one."""
    return n * rank // world, n * (rank + 1) // world


def pair_files(pairs_dir: str | Path) -> list[tuple[Path, int]]:
    """The pair shards in order with their row counts (from the Parquet footers only)."""
    files = sorted(Path(pairs_dir).glob("pairs-*.parquet"))
    return [(f, pq.ParquetFile(f).metadata.num_rows) for f in files]


def read_pair_rows(pairs_dir: str | Path, start: int, stop: int) -> np.ndarray:
    """Pairs [start, stop) as int32 [rows, 2]; reads only the shards that overlap the range."""
    parts, offset = [], 0
    for path, rows in pair_files(pairs_dir):
        lo, hi = max(start, offset), min(stop, offset + rows)
        if lo < hi:
            table = pq.read_table(path, columns=["center", "context"]).slice(lo - offset, hi - lo)
            parts.append(np.stack([table.column(0).to_numpy(), table.column(1).to_numpy()], 1))
        offset += rows
    return np.concatenate(parts).astype(np.int32) if parts else np.zeros((0, 2), np.int32)


def total_pairs(pairs_dir: str | Path) -> int:
    return sum(rows for _, rows in pair_files(pairs_dir))


def steps_per_epoch(n: int, world: int, cfg) -> int:
    """Full local batches the smallest rank holds (every rank steps in lockstep)."""
    local = cfg.batch_size // world
    steps = (n // world) // local
    return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps


def check(cfg, world: int, n: int) -> None:
    if cfg.model != "softmax":
        raise ValueError(
            f"train.nproc={world}: data-parallel training covers the softmax model only; "
            "set train.model=softmax or train.nproc=1"
        )
    if cfg.batch_size % world:
        raise ValueError(
            f"train.batch_size={cfg.batch_size} does not split over {world} processes: "
            "use a multiple of train.nproc"
        )
    if steps_per_epoch(n, world, cfg) == 0:
        raise ValueError(
            f"{n} pairs over {world} processes leave no full batch of "
            f"{cfg.batch_size // world} per process: lower train.batch_size or train.nproc"
        )


def train_shards(shards: dict[int, np.ndarray], n: int, world: int, vocab_size: int, cfg,
                 device: torch.device, on_epoch=None) -> tuple:  # fmt: skip
    """The training loop both paths share. `shards` maps rank -> its pairs: one entry in a DDP
    process, all of them in the reference, which concatenates the ranks' local batches into
    the global one. Returns (model, epoch losses, step losses, pairs seen, seconds)."""
    ddp = dist.is_available() and dist.is_initialized()
    torch.manual_seed(cfg.seed)
    model = Word2Vec(vocab_size, cfg.embed_size).to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if ddp else model
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    local = cfg.batch_size // world
    steps = steps_per_epoch(n, world, cfg)
    data = {r: torch.from_numpy(p.astype(np.int64)).to(device) for r, p in shards.items()}
    epoch_loss, step_loss, seen, seconds = [], [], 0, 0.0
    for epoch in range(cfg.epochs):
        started = time.perf_counter()
        orders = {r: torch.from_numpy(np.random.default_rng([cfg.seed, epoch, r])
                                      .permutation(len(p))).to(device)
                  for r, p in data.items()}  # fmt: skip
        losses = torch.zeros(steps, device=device)
        for step in range(steps):
            batch = torch.cat([data[r][orders[r][step * local : (step + 1) * local]] for r in data])
            loss = softmax_loss(net, batch[:, 0], batch[:, 1])  # context predicts center
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses[step] = loss.detach()
        if ddp:  # equal local batches: the global loss is the mean over ranks
            dist.all_reduce(losses)
            losses /= world
        steps_done = losses.tolist()
        mean = float(np.mean(steps_done))
        if not math.isfinite(mean):
            raise NonFiniteLoss(f"training loss became {mean} in epoch {epoch + 1}")
        elapsed = time.perf_counter() - started
        epoch_loss.append(mean)
        step_loss += steps_done
        seen += steps * cfg.batch_size
        seconds += elapsed
        if on_epoch:
            on_epoch(epoch, mean, steps * cfg.batch_size / elapsed, model)
    return model, epoch_loss, step_loss, seen, seconds


def train_reference(pairs_dir: str | Path, vocab_size: int, cfg, world: int) -> tuple:
    """One process, the same global batches as `world` DDP ranks (see train_shards)."""
    n = total_pairs(pairs_dir)
    check(cfg, world, n)
    shards = {r: read_pair_rows(pairs_dir, *rank_range(n, r, world)) for r in range(world)}
    return train_shards(shards, n, world, vocab_size, cfg, pick_device(cfg.device))


@dataclass
class Job:
    pairs_dir: str
    vocab_size: int
    cfg: object  # the train section (pydantic, picklable)
    world: int
    port: int
    out: str  # rank 0 writes model.pt and result.json here
    run_id: str | None = None


def _save(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def worker(rank: int, job: Job) -> None:
    """One DDP rank (a spawned process)."""
    device = pick_device(job.cfg.device)
    if device.type == "cuda":
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // job.world))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            init_method=f"tcp://127.0.0.1:{job.port}",
                            rank=rank, world_size=job.world)  # fmt: skip
    out = Path(job.out)
    try:
        n = total_pairs(job.pairs_dir)
        shard = read_pair_rows(job.pairs_dir, *rank_range(n, rank, job.world))

        def on_epoch(epoch: int, loss: float, rate: float, model) -> None:
            if rank != 0:
                return
            if job.run_id:
                from tasks.engine import tracking

                tracking.log_metrics(job.run_id, {"train_loss": loss, "epoch_pairs_per_sec": rate},
                                     step=epoch)  # fmt: skip
            _save(out / "model.pt", {"model": model.state_dict(), "epoch": epoch})

        _, epochs, steps, seen, seconds = train_shards(
            {rank: shard}, n, job.world, job.vocab_size, job.cfg, device, on_epoch
        )
        if rank == 0:
            result = {"epoch_loss": epochs, "step_loss": steps, "pairs_seen": seen,
                      "seconds": seconds, "device": str(device), "world": job.world}  # fmt: skip
            (out / "result.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def train_ddp(pairs_dir: str | Path, vocab_size: int, cfg, nproc: int, run_id: str | None = None,
              out: str | Path | None = None) -> tuple[TrainResult, dict]:  # fmt: skip
    """Spawn `nproc` ranks and wait; returns rank 0's model and its result record."""
    import torch.multiprocessing as mp

    check(cfg, nproc, total_pairs(pairs_dir))
    with tempfile.TemporaryDirectory(prefix="seqflow-ddp-") as tmp:
        folder = Path(out or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        job = Job(str(pairs_dir), vocab_size, cfg, nproc, free_port(), str(folder), run_id)
        mp.start_processes(worker, args=(job,), nprocs=nproc, start_method="spawn", join=True)
        record = json.loads((folder / "result.json").read_text())
        state = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    model = Word2Vec(vocab_size, cfg.embed_size)
    model.load_state_dict(state["model"])
    result = TrainResult(model, list(record["epoch_loss"]), record["pairs_seen"],
                         record["seconds"], record["device"])  # fmt: skip
    if out:
        result.checkpoint = str(Path(out) / "model.pt")
    return result, record


@task(name="train-ddp", cache_policy=NO_CACHE)
def ddp_train_task(
    pairs: StageOutput, vocab: StageOutput, cfg, run_id: str, out: str | None = None
) -> TrainResult:
    """train_task's counterpart for train.nproc > 1: rank 0 logs the per-epoch metrics and
    writes `out`/model.pt after each epoch."""
    from tasks.engine import tracking
    from tasks.vocab import read_vocab

    id2tok, _ = read_vocab(vocab)
    logger = run_logger()
    logger.info("training softmax on %s with DDP, %d processes", pairs.path, cfg.nproc)
    result, record = train_ddp(pairs.path, len(id2tok), cfg, cfg.nproc, run_id, out)
    tracking.log_metrics(run_id, {"final_train_loss": result.epoch_loss[-1],
                                  "pairs_per_sec": result.pairs_per_sec,
                                  "train_seconds": result.seconds})  # fmt: skip
    tracking.set_tags(run_id, {"device": result.device, "ddp_world_size": record["world"]})
    return result
