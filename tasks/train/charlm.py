"""The character-level language models' training pieces: model, optimizer, shuffled minibatches,
loss, perplexity and sampling. The loop is tasks/runtime's (`fit`)."""

import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from tasks.runtime.loop import Recipe, pick_device, warmup_cosine


def _loss_sum(model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of predicting batch[:, 1:] from batch[:, :-1], and the count."""
    logits = model(batch[:, :-1])  # [B, T, V]
    target = batch[:, 1:]
    return F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="sum"), target.numel()


@torch.no_grad()
def perplexity(model: nn.Module, windows: np.ndarray, batch_size: int, device) -> float:
    """exp(mean cross-entropy over every held-out prediction), not one batch's loss."""
    model.eval()
    total = 0.0
    for i in range(0, len(windows), batch_size):
        batch = torch.from_numpy(windows[i : i + batch_size].astype(np.int64)).to(device)
        total += _loss_sum(model, batch)[0].item()
    return math.exp(total / max(windows[:, 1:].size, 1))  # over every prediction


class CharRecipe(Recipe):
    """One model kind on the windows: Adadelta (or AdamW, constant or warm-up + cosine over
    the run's steps), clipping at cfg.clip, shuffled
    minibatches of window indices from a numpy Generator (its state goes in checkpoints);
    train_ppl (from the epoch's summed losses, as the notebook) and test_ppl every epoch
    (`held="val"`: the held-out windows are a validation block, the metric val_ppl). With
    `valid` windows, val_ppl too, and the runtime keeps the epoch with the lowest val_ppl."""

    unit = "chars"

    def __init__(self, kind: str, train: np.ndarray, test: np.ndarray, vocab_size: int, cfg,
                 held: str = "test", valid: np.ndarray | None = None):  # fmt: skip
        from models.charlm import CharLM

        self.name, self.cfg, self.clip = kind, cfg, cfg.clip
        self.device = pick_device(cfg.device)
        torch.manual_seed(cfg.seed)
        layers = 2 if kind in ("lstm_deep", "lstm_bidir") else cfg.n_layers  # the notebook's 2
        model = CharLM(
            vocab_size, kind, cfg.hidden, layers, dropout=cfg.dropout, weight_drop=cfg.weight_drop
        )
        self.model = model.to(self.device)
        params = self.model.parameters()
        if cfg.optimizer == "adadelta":  # the notebook: lr 1 for the scratch RNN, 4 for the rest
            lr = cfg.lr_rnn_scratch if kind == "rnn_scratch" else cfg.lr
            self.optimizer = torch.optim.Adadelta(params, lr=lr)
        else:
            self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        if cfg.schedule == "cosine":
            per_epoch = math.ceil(len(train) / cfg.batch_size)
            steps = min(per_epoch, cfg.max_steps_per_epoch or per_epoch) * cfg.epochs
            self.scheduler = warmup_cosine(self.optimizer, steps, cfg.warmup, cfg.lr_floor)
        self.rng = np.random.default_rng(cfg.seed)
        self.data = torch.from_numpy(train.astype(np.int64))
        self.test, self.held, self.valid = test, held, valid
        if valid is not None:
            self.select = ("val_ppl", "min")

    def batches(self, epoch: int) -> list[torch.Tensor]:
        order, bs = torch.from_numpy(self.rng.permutation(len(self.data))), self.cfg.batch_size
        return [order[i : i + bs] for i in range(0, len(order), bs)]

    def count(self, batch) -> int:
        return len(batch) * (self.data.shape[1] - 1)

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, int]:
        total, n = _loss_sum(model, self.data[batch].to(self.device))
        self.sums.append(total.detach())
        self.chars += n
        return total / n, n

    def start_epoch(self, epoch: int) -> None:
        self.sums, self.chars = [], 0  # this epoch's summed losses (no sync per step), items

    def evaluate(self, epoch: int) -> dict[str, float]:
        # in step order, in float64: cumsum adds left to right (np.sum and sum() do not)
        total = float(np.cumsum(torch.stack(self.sums).tolist())[-1]) if self.sums else 0.0
        count = self.chars
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            both = torch.tensor([total, float(count)], dtype=torch.float64, device=self.device)
            dist.all_reduce(both)  # every rank summed its own slices
            total, count = both.tolist()
        held = {f"{self.held}_ppl": perplexity(self.model, self.test, self.cfg.batch_size,
                                                self.device)}  # fmt: skip
        if self.valid is not None:
            held["val_ppl"] = perplexity(self.model, self.valid, self.cfg.batch_size, self.device)
        return {"train_ppl": math.exp(total / max(count, 1)), **held}

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]


def read_split(windows: str | Path, split: str) -> np.ndarray:
    """A windows stage's `split` windows (train/test.parquet), [n, length + 1] int8."""
    col = pq.read_table(Path(windows) / f"{split}.parquet").column("ids").combine_chunks()
    return col.flatten().to_numpy().reshape(len(col), -1)


def carve_validation(train: np.ndarray, share: float, overlap: int) -> tuple[np.ndarray, ...]:
    """(train, validation): the last `share` of the training windows (book order: a block of
    whole training chapters, never the test ones) held out, and the `overlap` windows before
    it that share text with it dropped."""
    n_val = max(1, int(len(train) * share))
    cut = len(train) - n_val
    if cut - overlap < 1:
        raise ValueError(f"{len(train)} training windows are too few to hold out {share:.0%} "
                         "for validation: use more text or shorter windows")  # fmt: skip
    return train[: cut - overlap], train[cut:]


def overlapping(length: int, stride: int) -> int:
    """How many training windows before a validation block share text with it."""
    return -(-(length + 1) // stride)


def recipe(windows: str, kind: str, vocab_size: int, cfg, overlap: int = 0) -> CharRecipe:
    """The recipe from a windows stage folder (what `Build("tasks.train.charlm:recipe", ...)`
    calls in every DDP rank); with cfg.validation_share, a validation block carved from the
    training windows (`overlap` windows before it dropped)."""
    train, test = read_split(windows, "train"), read_split(windows, "test")
    valid = None
    if cfg.validation_share:
        train, valid = carve_validation(train, cfg.validation_share, overlap)
    return CharRecipe(kind, train, test, vocab_size, cfg, valid=valid)


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
            ids.append(int(logits.argmax()))
        else:
            probs = torch.softmax(logits / temperature, dim=0)
            ids.append(int(torch.multinomial(probs, 1, generator=gen)))
    return "".join(vocab[i] for i in ids)
