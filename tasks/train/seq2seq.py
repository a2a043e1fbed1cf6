"""Training and evaluating the Seq2Seq translator: length-bucketed batches, best-validation
checkpoint, resume after an interruption, greedy decoding and corpus BLEU."""

import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from models.seq2seq import Seq2Seq
from tasks.engine.accel import autocast, compiled, to_device, use_cudnn
from tasks.runtime.faults import check_finite
from tasks.translation import EOS, PAD, SOS


def pad_batch(seqs: list[np.ndarray], device) -> torch.Tensor:
    """Time-major [max len, batch] int64, padded with <pad>."""
    out = np.full((max(map(len, seqs)), len(seqs)), PAD, dtype=np.int64)
    for j, s in enumerate(seqs):
        out[: len(s), j] = s
    return to_device(out, device)  # pinned, non-blocking to a GPU


def bucket_batches(
    src: list[np.ndarray], trg: list[np.ndarray], batch_size: int, rng: np.random.Generator | None
) -> list[np.ndarray]:
    """Index batches of similar lengths (sorted by source then target length, random order
    among equals), the batches themselves shuffled; rng=None keeps a fixed order (evaluation)."""
    n = len(src)
    tiebreak = rng.random(n) if rng is not None else np.arange(n)
    order = np.lexsort((tiebreak, [len(t) for t in trg], [len(s) for s in src]))
    batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def random_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Plain shuffled batches (no bucketing): more padding."""
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


@dataclass
class History:
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    tokens: int = 0
    seconds: float = 0.0
    best_val: float = math.inf
    best_epoch: int = -1

    @property
    def tokens_per_sec(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def train_epoch(model: Seq2Seq, data, batches, opt, cfg, device, max_steps=None, epoch=0) -> tuple:
    """(mean of the batch losses, as the notebook reports, target tokens, seconds)."""
    model.train()
    src, trg = data
    total, steps, tokens = 0.0, 0, 0
    started = time.perf_counter()
    todo = batches[:max_steps] if max_steps else batches
    loss_fn = compiled(model.loss, cfg.compile)
    for idx in tqdm(todo, desc="train", unit="batch", leave=False):
        s, t = pad_batch([src[i] for i in idx], device), pad_batch([trg[i] for i in idx], device)
        opt.zero_grad(set_to_none=True)
        with autocast(device, cfg.precision):
            loss = loss_fn(s, t, PAD, cfg.teacher_forcing)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        total += check_finite(loss, epoch, steps, "seq2seq: ")  # NaN/inf stops here
        steps += 1
        tokens += int((t[1:] != PAD).sum())
    return total / max(steps, 1), tokens, time.perf_counter() - started


@torch.no_grad()
def evaluate_loss(model: Seq2Seq, data, batch_size: int, device) -> float:
    """Mean of the batch losses without teacher forcing (the notebook's evaluate)."""
    model.eval()
    src, trg = data
    losses = []
    for idx in bucket_batches(src, trg, batch_size, None):
        s, t = pad_batch([src[i] for i in idx], device), pad_batch([trg[i] for i in idx], device)
        losses.append(model.loss(s, t, PAD, 0.0).item())
    return float(np.mean(losses))


def _save(path: Path, **state) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")  # unique: runs may overlap
    torch.save(state, tmp)
    tmp.replace(path)  # a reader never sees half a checkpoint


def load_checkpoint(path: Path, device) -> dict:
    """A checkpoint of ours, read weights-only: tensors, plain types and History, never code."""
    import pickle

    try:
        with torch.serialization.safe_globals([History]):
            return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        raise RuntimeError(
            f"{path} holds objects other than weights ({str(err).splitlines()[-1][:200]}); it "
            "was not written by this version of seqflow. Delete it, or run with "
            "--set train.resume=false"
        ) from None


def fit(
    model: Seq2Seq,
    train,
    valid,
    cfg,
    device,
    checkpoints: Path,
    on_epoch: Callable[[int, float, float, float], None] | None = None,
    log=print,
) -> History:
    """Train cfg.epochs epochs, keep best.pt (lowest validation loss) and last.pt in
    `checkpoints`; when last.pt is there, resume after its epoch. Returns the history with the
    best weights loaded into `model`."""
    checkpoints.mkdir(parents=True, exist_ok=True)
    use_cudnn(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    hist, start = History(), 0
    last = checkpoints / "last.pt"
    if last.exists():
        state = load_checkpoint(last, device)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        hist, start = state["history"], state["epoch"] + 1
        torch.set_rng_state(state["torch_rng"])
        log(f"resuming after epoch {start} from {last}")
    rng = np.random.default_rng(cfg.seed + start)
    for epoch in range(start, cfg.epochs):
        batches = (
            bucket_batches(*train, cfg.batch_size, rng)
            if cfg.bucket
            else random_batches(len(train[0]), cfg.batch_size, rng)
        )
        loss, tokens, seconds = train_epoch(model, train, batches, opt, cfg, device,
                                            cfg.max_steps_per_epoch, epoch)  # fmt: skip
        val = evaluate_loss(model, valid, cfg.batch_size, device)
        hist.train_loss.append(loss)
        hist.val_loss.append(val)
        hist.tokens += tokens
        hist.seconds += seconds
        if val < hist.best_val:
            hist.best_val, hist.best_epoch = val, epoch
            _save(checkpoints / "best.pt", model=model.state_dict(), epoch=epoch)
        _save(last, model=model.state_dict(), opt=opt.state_dict(), epoch=epoch, history=hist,
              torch_rng=torch.get_rng_state())  # fmt: skip
        log(f"epoch {epoch + 1}/{cfg.epochs}  train {loss:.3f} (ppl {math.exp(loss):.1f})  "
            f"val {val:.3f} (ppl {math.exp(val):.1f})  {tokens / seconds:.0f} tok/s")  # fmt: skip
        if on_epoch:
            on_epoch(epoch, loss, val, tokens / seconds)
    best = load_checkpoint(checkpoints / "best.pt", device)
    model.load_state_dict(best["model"])
    return hist


def detokenize(tokens: list[str]) -> str:
    """Spaces back out of spaCy tokens: none before punctuation or English clitics."""
    text = " ".join(tokens)
    text = re.sub(r" ([.,!?;:%)])", r"\1", text)
    text = re.sub(r"([(]) ", r"\1", text)
    return re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", text)


@torch.no_grad()
def translate_ids(model: Seq2Seq, src: list[np.ndarray], device, max_len=50, batch=256):
    """Greedy decoding, in input order."""
    model.eval()
    out: list[list[int]] = [[] for _ in src]
    for idx in bucket_batches(src, src, batch, None):
        hyps = model.greedy(pad_batch([src[i] for i in idx], device), SOS, EOS, max_len)
        for i, h in zip(idx, hyps, strict=True):
            out[i] = h
    return out


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    """sacreBLEU (13a tokenization), case-insensitive: the model writes lowercase."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hypotheses, [references], lowercase=True).score)
