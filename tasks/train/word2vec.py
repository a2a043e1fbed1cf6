"""Training loops (plain PyTorch, no tracking: results come back to the flow)."""

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE
from torch import nn
from tqdm.auto import tqdm

from models.word2vec import SkipGramNS, Word2Vec
from tasks.engine.stage import StageOutput, run_logger
from tasks.runtime import checkpoint
from tasks.runtime.faults import NonFiniteLoss, check_finite  # noqa: F401 (its old import path)

log = logging.getLogger(__name__)


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class TrainResult:
    model: nn.Module
    epoch_loss: list[float] = field(default_factory=list)
    pairs_seen: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    checkpoint: str | None = None  # the last checkpoint file written, if any
    resumed_epochs: int = 0  # epochs restored from a checkpoint rather than trained here
    resumed_from_run: str | None = None  # the MLflow run that wrote that checkpoint

    @property
    def pairs_per_sec(self) -> float:
        return self.pairs_seen / self.seconds if self.seconds else 0.0

    def record(self, epoch: int, mean: float, seen: int, seconds: float) -> None:
        """Book one finished epoch."""
        self.epoch_loss.append(mean)
        self.pairs_seen += seen
        self.seconds += seconds
        log.info(
            "epoch %d  loss %.4f  %.0f pairs/s (%s)", epoch + 1, mean, seen / seconds, self.device
        )

    def save(self, where: Path | None, epoch: int, meta: dict | None, **state) -> None:
        """Checkpoint after `epoch` (model, optimizer, RNG states and this history)."""
        if where is None:
            return
        state |= {"epoch": epoch, "epoch_loss": list(self.epoch_loss), "meta": meta or {},
                  "pairs_seen": self.pairs_seen, "seconds": self.seconds}  # fmt: skip
        self.checkpoint = str(checkpoint.save(where, epoch, state))

    def resume(self, where: Path | None) -> dict | None:
        """The newest checkpoint's state, its history booked here; None = start afresh."""
        found = checkpoint.latest(where) if where is not None else None
        if found is None:
            return None
        path, state = found
        self.checkpoint = str(path)
        self.epoch_loss = list(state["epoch_loss"])
        self.pairs_seen, self.seconds = state["pairs_seen"], state["seconds"]
        self.resumed_epochs = state["epoch"] + 1
        self.resumed_from_run = state["meta"].get("run_id")
        log.info("resuming after epoch %d from %s", self.resumed_epochs, path)
        return state


def softmax_loss(model: Word2Vec, center: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting `center` from `context` (the notebook's loss).

    The logits depend on the context id only, so they are computed once per distinct context
    in the batch: the same loss and gradient as the per-pair form, with far fewer FLOPs.
    """
    uniq, inverse, counts = torch.unique(context, return_inverse=True, return_counts=True)
    logits = model(uniq)  # [U, V]
    log_z = torch.logsumexp(logits, dim=1)  # [U]
    picked = logits[inverse, center]  # [batch]
    return ((counts * log_z).sum() - picked.sum()) / center.numel()


def noise_table(counts: np.ndarray, power: float, size: int = 1 << 22) -> torch.Tensor:
    """Token ids laid out in proportion to count**power; uniform draws from it sample noise."""
    probs = counts.astype(np.float64) ** power
    probs /= probs.sum()
    repeats = np.round(probs * size).astype(np.int64)
    return torch.from_numpy(np.repeat(np.arange(len(counts)), np.maximum(repeats, 1)))


def keep_probability(counts: np.ndarray, sample: float) -> np.ndarray:
    """word2vec's frequent-word subsampling: P(keep an occurrence of w), capped at 1."""
    if sample <= 0:
        return np.ones(len(counts))
    threshold = sample * counts.sum()
    freq = np.maximum(counts.astype(np.float64), 1)
    return np.minimum((np.sqrt(freq / threshold) + 1) * threshold / freq, 1)


def pair_probability(
    pairs: np.ndarray, counts: np.ndarray, cfg, distance: np.ndarray | None
) -> np.ndarray | None:
    """P(a pair is trained on in an epoch), drawn afresh each epoch; None = every pair.

    subsample: both words survive word2vec's frequent-word subsampling. dynamic_window:
    word2vec shrinks each center's window to b ~ U{1..w}, so a pair at distance d survives
    with probability (w - d + 1) / w.
    """
    p = None
    if cfg.subsample > 0:
        keep = keep_probability(counts, cfg.subsample)
        p = keep[pairs[:, 0]] * keep[pairs[:, 1]]
    if cfg.dynamic_window:
        if distance is None or len(distance) != len(pairs):
            raise ValueError(
                "train.dynamic_window needs each pair's window distance (the windows stage's "
                "'distance' column); re-run the windows stage or set train.dynamic_window=false"
            )
        w = int(distance.max()) if len(distance) else 1
        by_window = (w - distance.astype(np.float64) + 1) / w
        p = by_window if p is None else p * by_window
    return p


def use_cpu_kernel(cfg, device: torch.device) -> bool:
    if cfg.kernel == "torch" or device.type != "cpu":
        return False
    try:
        import tasks.train.sgns_cpu  # noqa: F401  (needs numba)
    except ImportError:
        if cfg.kernel == "numba":
            raise
        return False
    return True


def warm_start(model: nn.Module, old: nn.Module, old_vocab: list[str], new_vocab: list[str]) -> int:
    """Copy the rows of tokens both vocabularies know from `old` into `model` (every parameter
    with one row per token and the same width); new tokens keep their fresh init. Returns how
    many tokens were carried over (0 when the two models do not match in shape)."""
    old_index = {t: i for i, t in enumerate(old_vocab)}
    pairs = [(i, old_index[t]) for i, t in enumerate(new_vocab) if t in old_index]
    if not pairs:
        return 0
    new_rows, old_rows = (torch.tensor(x) for x in zip(*pairs, strict=True))
    old_params = dict(old.named_parameters())
    carried = 0
    with torch.no_grad():
        for name, param in model.named_parameters():
            src = old_params.get(name)
            if src is None or src.shape[1:] != param.shape[1:] or len(src) != len(old_vocab):
                continue
            if len(param) != len(new_vocab):
                continue
            param[new_rows.to(param.device)] = src.detach()[old_rows].to(param.device, param.dtype)
            carried += 1
    return len(pairs) if carried else 0


def _train_sgns_cpu(
    pairs: np.ndarray, counts: np.ndarray, cfg, p_pair, on_epoch, init, where, meta
) -> TrainResult:
    """SGNS with the compiled per-pair loop (tasks/train/sgns_cpu.py) on the model's own weights."""
    from tasks.train.sgns_cpu import alias_table, sgns_epoch

    model = SkipGramNS(len(counts), cfg.embed_size)
    if init:
        init(model)
    win, wout = model.inp.weight.data.numpy(), model.out.weight.data.numpy()  # shared memory
    noise = alias_table(counts.astype(np.float64) ** cfg.unigram_power)
    centers = np.ascontiguousarray(pairs[:, 0], dtype=np.int32)
    contexts = np.ascontiguousarray(pairs[:, 1], dtype=np.int32)
    rng = np.random.default_rng(cfg.seed)
    n = len(pairs)
    expected = n if p_pair is None else int(p_pair.sum())
    per_epoch = expected
    if cfg.max_steps_per_epoch:
        per_epoch = min(expected, cfg.max_steps_per_epoch * cfg.batch_size)
    total = max(per_epoch * cfg.epochs, 1)
    done = 0
    result = TrainResult(model, device="cpu")
    state = result.resume(where)
    if state is not None:
        model.load_state_dict(state["model"])  # copies into the shared weights in place
        checkpoint.restore_rng(state["rng"], rng=rng)
        done = state["done"]
    for epoch in range(result.resumed_epochs, cfg.epochs):
        started = time.perf_counter()
        order = rng.permutation(n)
        if p_pair is not None:
            order = order[rng.random(n) < p_pair[order]]
        order = order[:per_epoch]
        mean = sgns_epoch(win, wout, centers, contexts, order, noise, cfg.negatives, cfg.lr,
                          done, total, cfg.seed + epoch)  # fmt: skip
        # the compiled loop reports per epoch: the step is the epoch's last
        check_finite(
            mean, epoch, math.ceil(len(order) / cfg.batch_size) - 1, kept=result.checkpoint
        )
        done += len(order)
        seconds = time.perf_counter() - started
        result.record(epoch, mean, len(order), seconds)
        result.save(where, epoch, meta, model=model.state_dict(),
                    rng=checkpoint.rng_state(rng=rng), done=done)  # fmt: skip
        if on_epoch:
            on_epoch(epoch, mean, len(order) / seconds)
    return result


def train_word2vec(
    pairs: np.ndarray,
    counts: np.ndarray,
    cfg,
    on_epoch: Callable[[int, float, float], None] | None = None,
    distance: np.ndarray | None = None,
    init: Callable[[nn.Module], None] | None = None,
    checkpoints: Path | None = None,
    meta: dict | None = None,
) -> TrainResult:
    """Train on shuffled minibatches of (center, context) pairs. `counts` = token frequencies.

    cfg: the pipeline's train section (model, embed_size, batch_size, lr, epochs, ...).
    distance: each pair's window distance, needed by cfg.dynamic_window.
    init: called on the fresh model before training (e.g. a warm start).
    checkpoints: a folder for one checkpoint per epoch; training resumes after the newest one
    found there. meta: plain data stored with each checkpoint (what recovery needs).
    A NaN or infinite loss raises NonFiniteLoss at once, naming the epoch and step.
    """
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    vocab_size = len(counts)
    n = len(pairs)
    if n == 0:
        raise ValueError("no training pairs: every document has fewer than 2 in-vocabulary tokens")
    p_pair = pair_probability(pairs, counts, cfg, distance)
    if cfg.model == "sgns" and use_cpu_kernel(cfg, device):
        return _train_sgns_cpu(pairs, counts, cfg, p_pair, on_epoch, init, checkpoints, meta)
    data = torch.from_numpy(pairs.astype(np.int64)).to(device)  # [N, 2] (center, context)
    model = (Word2Vec if cfg.model == "softmax" else SkipGramNS)(vocab_size, cfg.embed_size)
    if init:
        init(model)
    model = model.to(device)
    if cfg.model == "softmax":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SparseAdam(model.parameters(), lr=cfg.lr)
        table = noise_table(counts, cfg.unigram_power).to(device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    if p_pair is not None:
        p_pair = torch.from_numpy(p_pair).float().to(device)  # [N]
    result = TrainResult(model, device=str(device))
    state = result.resume(checkpoints)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        checkpoint.restore_rng(state["rng"], gen=gen)
    for epoch in range(result.resumed_epochs, cfg.epochs):
        started = time.perf_counter()
        order = torch.randperm(n, generator=gen, device=device)
        if p_pair is not None:  # subsampling / dynamic window, afresh each epoch
            order = order[torch.rand(n, generator=gen, device=device) < p_pair[order]]
        steps = math.ceil(len(order) / cfg.batch_size)
        if cfg.max_steps_per_epoch:
            steps = min(steps, cfg.max_steps_per_epoch)
        total = torch.zeros((), device=device)
        seen = 0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False)
        for step in bar:
            batch = data[order[step * cfg.batch_size : (step + 1) * cfg.batch_size]]
            center, context = batch[:, 0], batch[:, 1]
            if cfg.model == "softmax":
                # the notebook's direction: the context word predicts the center word
                loss = softmax_loss(model, center, context)
            else:
                negatives = table[
                    torch.randint(
                        len(table), (len(batch), cfg.negatives), generator=gen, device=device
                    )
                ]
                loss = SkipGramNS.loss(*model.score(center, context, negatives))
            check_finite(loss, epoch, step, kept=result.checkpoint)  # before the step spreads it
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(batch)
            total += (loss.detach() - total) * (len(batch) / seen)  # running mean: no overflow
        mean = check_finite(total, epoch, steps - 1, kept=result.checkpoint)
        seconds = time.perf_counter() - started
        result.record(epoch, mean, seen, seconds)
        result.save(checkpoints, epoch, meta, model=model.state_dict(),
                    optimizer=opt.state_dict(), rng=checkpoint.rng_state(gen=gen))  # fmt: skip
        if on_epoch:
            on_epoch(epoch, mean, seen / seconds)
    return result


def _warm_start_hook(id2tok: list[str], run_id: str, logger, name: str = "word2vec"):
    """An `init` that copies the champion's rows for known tokens (None without a champion)."""
    from tasks.engine import tracking

    champ = tracking.champion(name)
    if champ is None:
        logger.info("warm start: no champion yet, training from scratch")
        return None
    old = tracking.load_model(name, champ.version)
    old_vocab = tracking.load_json(champ.run_id, "vocab.json")

    def init(model: nn.Module) -> None:
        carried = warm_start(model, old, old_vocab, id2tok)
        logger.info(
            "warm start from %s version %s: %d of %d tokens keep their vectors, %d start fresh",
            name, champ.version, carried, len(id2tok), len(id2tok) - carried,
        )  # fmt: skip
        tracking.set_tags(run_id, {"warm_start_from": f"{name}/{champ.version}"})
        tracking.log_metrics(run_id, {"warm_start_tokens": carried})

    return init


def _close_interrupted(old_run: str | None, run_id: str, logger) -> None:
    """A killed run stays RUNNING in MLflow; the run that resumed its checkpoint (and owns the
    folder's lock, so that run is gone) marks it KILLED."""
    from tasks.engine import tracking

    if not old_run or old_run == run_id:
        return
    try:
        if tracking.get_run(old_run).info.status == "RUNNING":
            tracking.end_run(old_run, "KILLED", f"stopped mid-training; resumed by run {run_id}")
    except Exception as err:  # not in this store (another tracking URI): nothing to close
        logger.info("interrupted run %s not closed: %s", old_run, err)


@task(name="train", cache_policy=NO_CACHE)
def train_task(
    pairs: StageOutput, vocab: StageOutput, cfg, run_id: str, checkpoints: str | None = None,
    meta: dict | None = None,
) -> TrainResult:  # fmt: skip
    """Train on the Parquet pairs; per-epoch loss goes to the MLflow run as it happens.

    checkpoints: this setup's checkpoint folder (resume after its newest epoch); meta: stored
    with each checkpoint, with the vocabulary, so `seqflow log-model` can log it later."""
    from tasks.engine import tracking
    from tasks.vocab import read_vocab
    from tasks.windows import read_distances, read_pairs

    logger = run_logger()
    id2tok, counts = read_vocab(vocab)
    data = read_pairs(pairs)
    init = _warm_start_hook(id2tok, run_id, logger) if cfg.warm_start else None
    logger.info(
        "training %s on %d pairs, vocab %d, device %s",
        cfg.model,
        len(data),
        len(counts),
        pick_device(cfg.device),
    )
    where = Path(checkpoints) if checkpoints else None
    logging_down = []

    def on_epoch(epoch: int, loss: float, rate: float) -> None:
        logger.info("epoch %d/%d  train_loss %.4f  %.0f pairs/s", epoch + 1, cfg.epochs, loss, rate)
        if logging_down:  # MLflow failed once: train on, the checkpoints keep the model
            return
        try:
            tracking.log_metrics(run_id, {"train_loss": loss, "epoch_pairs_per_sec": rate},
                                 step=epoch)  # fmt: skip
        except Exception as err:
            logging_down.append(err)
            logger.warning("MLflow logging failed (%s); training goes on, checkpointed", err)

    distance = read_distances(pairs) if cfg.dynamic_window else None
    meta = {"pipeline": "word2vec", "run_id": run_id, "vocab": id2tok,
            "model": cfg.model, "embed_size": cfg.embed_size, "epochs": cfg.epochs,
            **(meta or {})}  # fmt: skip
    result = train_word2vec(data, counts, cfg, on_epoch, distance, init, where, meta)
    if result.resumed_epochs:
        logger.info("resumed after epoch %d from %s", result.resumed_epochs, result.checkpoint)
        tracking.set_tags(run_id, {"resumed_from_epoch": result.resumed_epochs,
                                   "resumed_from_run": result.resumed_from_run})  # fmt: skip
        _close_interrupted(result.resumed_from_run, run_id, logger)
        for epoch, loss in enumerate(result.epoch_loss[: result.resumed_epochs]):
            tracking.log_metrics(run_id, {"train_loss": loss}, step=epoch)
    tracking.log_metrics(
        run_id,
        {
            "final_train_loss": result.epoch_loss[-1],
            "pairs_per_sec": result.pairs_per_sec,
            "train_seconds": result.seconds,
        },
    )
    tracking.set_tags(run_id, {"device": result.device})
    if result.checkpoint:
        tracking.set_tags(run_id, {"checkpoint": result.checkpoint})
    return result
