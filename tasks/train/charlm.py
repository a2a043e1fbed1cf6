"""Training, perplexity and sampling for the character-level language models."""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tasks.runtime.faults import check_finite


@dataclass
class CharHistory:
    train_ppl: list[float] = field(default_factory=list)
    test_ppl: list[float] = field(default_factory=list)
    chars: int = 0
    seconds: float = 0.0

    @property
    def chars_per_sec(self) -> float:
        return self.chars / self.seconds if self.seconds else 0.0


def make_optimizer(model: nn.Module, cfg, kind: str) -> torch.optim.Optimizer:
    if cfg.optimizer == "adadelta":  # the notebook: lr 1 for the scratch RNN, 4 for the rest
        lr = cfg.lr_rnn_scratch if kind == "rnn_scratch" else cfg.lr
        return torch.optim.Adadelta(model.parameters(), lr=lr)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _loss_sum(model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of predicting batch[:, 1:] from batch[:, :-1], and the count."""
    logits = model(batch[:, :-1])  # [B, T, V]
    target = batch[:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                           reduction="sum")  # fmt: skip
    return loss, target.numel()


@torch.no_grad()
def perplexity(model: nn.Module, windows: np.ndarray, batch_size: int, device) -> float:
    """exp(mean cross-entropy over every held-out prediction), not one batch's loss."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch_size):
        batch = torch.from_numpy(windows[i : i + batch_size].astype(np.int64)).to(device)
        loss, n = _loss_sum(model, batch)
        total, count = total + loss.item(), count + n
    return math.exp(total / max(count, 1))


def train_charlm(
    model: nn.Module,
    train: np.ndarray,
    test: np.ndarray,
    cfg,
    kind: str,
    device,
    on_epoch: Callable[[int, float, float], None] | None = None,
) -> CharHistory:
    """Shuffled minibatches, gradient clipping; train and test perplexity every epoch."""
    opt = make_optimizer(model, cfg, kind)
    rng = np.random.default_rng(cfg.seed)
    hist = CharHistory()
    data = torch.from_numpy(train.astype(np.int64))
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.from_numpy(rng.permutation(len(data)))
        steps = math.ceil(len(data) / cfg.batch_size)
        if cfg.max_steps_per_epoch:
            steps = min(steps, cfg.max_steps_per_epoch)
        total, count = 0.0, 0
        started = time.perf_counter()
        for s in range(steps):
            batch = data[order[s * cfg.batch_size : (s + 1) * cfg.batch_size]].to(device)
            loss, n = _loss_sum(model, batch)
            opt.zero_grad(set_to_none=True)
            (loss / n).backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            total, count = total + check_finite(loss, epoch, s, f"{kind}: "), count + n
        hist.seconds += time.perf_counter() - started
        hist.chars += count
        train_ppl = math.exp(total / max(count, 1))
        if not math.isfinite(train_ppl):
            raise FloatingPointError(f"{kind}: training perplexity became {train_ppl}")
        test_ppl = perplexity(model, test, cfg.batch_size, device)
        hist.train_ppl.append(train_ppl)
        hist.test_ppl.append(test_ppl)
        if on_epoch:
            on_epoch(epoch, train_ppl, test_ppl)
    return hist


@torch.no_grad()
def continue_text(
    model: nn.Module, vocab: list[str], prompt: str, n: int, temperature: float = 0.0, seed=0
) -> str:
    """Extend `prompt` by n characters: greedy (temperature 0) or sampled. Characters outside
    the vocabulary in the prompt are dropped."""
    model.eval()
    index = {c: i for i, c in enumerate(vocab)}
    ids = [index[c] for c in prompt if c in index]
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        logits = model(torch.tensor([ids]))[0, -1]
        if temperature <= 0:
            nxt = int(logits.argmax())
        else:
            probs = torch.softmax(logits / temperature, dim=0)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        ids.append(nxt)
    return "".join(vocab[i] for i in ids)
