"""word2vec's training pieces for the runtime (tasks/runtime): three recipes — the notebook's
softmax network (AdamW), skip-gram with negative sampling on torch (SparseAdam, noise table)
and on the compiled CPU kernel (models/sgns_cpu.py) — with their losses, noise and
subsampling helpers, the warm start, and the flow's train task. `fit` trains them."""

import logging
from pathlib import Path

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE
from torch import nn

from models.word2vec import SkipGramNS, Word2Vec
from tasks.engine.stage import StageOutput, run_logger
from tasks.runtime.loop import Build, Fitted, Plan, Recipe, pick_device
from tasks.runtime.trainer import fit

log = logging.getLogger(__name__)

NAME = "word2vec"


def softmax_loss(model: Word2Vec, center: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting `center` from `context` (the notebook's loss).

    The logits depend on the context id only, so they are computed once per distinct context
    in the batch: the same loss and gradient as the per-pair form, with far fewer FLOPs. An
    empty batch (a DDP rank's share of a tiny last batch) has loss 0 and zero gradients.
    """
    uniq, inverse, counts = torch.unique(context, return_inverse=True, return_counts=True)
    logits = model(uniq)  # [U, V]
    log_z = torch.logsumexp(logits, dim=1)  # [U]
    picked = logits[inverse, center]  # [batch]
    return ((counts * log_z).sum() - picked.sum()) / max(center.numel(), 1)


def noise_table(counts: np.ndarray, power: float, size: int = 1 << 22) -> torch.Tensor:
    """Token ids laid out in proportion to count**power; uniform draws from it sample noise."""
    probs = counts.astype(np.float64) ** power
    probs /= probs.sum()
    repeats = np.round(probs * size).astype(np.int64)
    return torch.from_numpy(np.repeat(np.arange(len(counts)), np.maximum(repeats, 1)))


def keep_probability(counts: np.ndarray, sample: float) -> np.ndarray:
    """word2vec's frequent-word subsampling (sample > 0): P(keep an occurrence of w), capped
    at 1."""
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
    if cfg.subsample > 0:  # both words kept; float32, as the draws compared with it
        keep = keep_probability(counts, cfg.subsample).astype(np.float32)
        p = keep[pairs[:, 0]] * keep[pairs[:, 1]]
    if cfg.dynamic_window:
        if distance is None or len(distance) != len(pairs):
            raise ValueError(
                "train.dynamic_window needs each pair's window distance (the windows stage's "
                "'distance' column); re-run the windows stage or set train.dynamic_window=false"
            )
        w = int(distance.max()) if len(distance) else 1
        by_window = ((w + 1 - np.arange(w + 1)) / w).astype(np.float32)[distance]
        p = by_window if p is None else p * by_window
    return p


def cpu_kernel(cfg, device: torch.device) -> str | None:
    """The compiled sgns loop to train with on this device: "c", "numba" or None (torch)."""
    if cfg.kernel == "torch" or device.type != "cpu":
        return None
    from models.sgns_cpu import c_kernel

    if cfg.kernel == "c":
        if c_kernel() is None:
            raise RuntimeError("train.kernel=c: the C kernels could not be built or loaded (see "
                               "the warning above); set train.kernel=auto or numba")  # fmt: skip
        return "c"
    if cfg.kernel == "auto" and c_kernel() is not None:
        return "c"
    try:
        import models.sgns_numba  # noqa: F401  (needs numba)
    except ImportError:
        if cfg.kernel == "numba":
            raise
        return None
    return "numba"


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
            rows = (len(src), len(param)) if src is not None else None
            if rows != (len(old_vocab), len(new_vocab)) or src.shape[1:] != param.shape[1:]:
                continue
            param[new_rows.to(param.device)] = src.detach()[old_rows].to(param.device, param.dtype)
            carried += 1
    return len(pairs) if carried else 0


# -- the recipes ------------------------------------------------------------------------------


class PairRecipe(Recipe):
    """softmax (AdamW) or sgns on torch (SparseAdam, noise from a table): shuffled minibatches
    of (center, context) pairs. A batch is the pairs' row numbers; `gen` draws the epoch's
    order, its subsampling and the noise words, and travels in the checkpoint."""

    name, unit = NAME, "pairs"

    def __init__(self, pairs, counts, cfg, p_pair, device: torch.device):
        self.cfg, self.device = cfg, device
        self.data = torch.from_numpy(pairs.astype(np.int64)).to(device)  # [N, 2]
        model = (Word2Vec if cfg.model == "softmax" else SkipGramNS)(len(counts), cfg.embed_size)
        self.model = model.to(device)
        if cfg.model == "softmax":
            self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr,
                                               weight_decay=cfg.weight_decay)  # fmt: skip
        else:
            self.optimizer = torch.optim.SparseAdam(self.model.parameters(), lr=cfg.lr)
            self.table = noise_table(counts, cfg.unigram_power).to(device)
        self.gen = torch.Generator(device=device).manual_seed(cfg.seed)
        self.p_pair = None if p_pair is None else torch.from_numpy(p_pair).float().to(device)

    def batches(self, epoch: int) -> list[torch.Tensor]:
        n, size = len(self.data), self.cfg.batch_size
        order = torch.randperm(n, generator=self.gen, device=self.device)
        if self.p_pair is not None:  # subsampling / dynamic window, afresh each epoch
            keep = torch.rand(n, generator=self.gen, device=self.device) < self.p_pair[order]
            order = order[keep]
        return [order[i : i + size] for i in range(0, len(order), size)]

    def loss(self, model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, int]:
        center, context = self.data[batch].T
        if self.cfg.model == "softmax":  # the notebook's direction: context predicts center
            return softmax_loss(model, center, context), len(batch)
        draw = torch.randint(len(self.table), (len(batch), self.cfg.negatives),
                             generator=self.gen, device=self.device)  # fmt: skip
        return SkipGramNS.loss(*model.score(center, context, self.table[draw])), len(batch)

    def state_dict(self) -> dict:
        return {"generator": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["generator"])


class KernelRecipe(Recipe):
    """sgns with the compiled per-pair loop (models/sgns_cpu.py, kernel "c" or "numba") on
    the model's own weights: an epoch is one batch — the pairs it keeps, in corpus order, as
    word2vec reads them — and one `sgns_epoch` call, whose learning rate decays over every
    pair of the run (`done` of `total`)."""

    name, unit = NAME, "pairs"

    def __init__(self, pairs, counts, cfg, p_pair, kernel: str = "c"):
        from models.sgns_cpu import alias_table

        self.cfg, self.p_pair, self.kernel = cfg, p_pair, kernel
        self.model = model = SkipGramNS(len(counts), cfg.embed_size)
        # NumPy views of the weights: the kernel updates them in place, a resume copies into them
        self.win, self.wout = model.inp.weight.data.numpy(), model.out.weight.data.numpy()
        self.noise = alias_table(counts.astype(np.float64) ** cfg.unigram_power)
        self.centers, self.contexts = np.ascontiguousarray(pairs.T, dtype=np.int32)
        self.rng = np.random.default_rng(cfg.seed)
        self.per_epoch = len(pairs) if p_pair is None else int(p_pair.sum())  # expected
        self.cap = None  # max_steps_per_epoch: at most this many pairs an epoch
        if cfg.max_steps_per_epoch:
            self.cap = cfg.max_steps_per_epoch * cfg.batch_size
            self.per_epoch = min(self.per_epoch, self.cap)
        self.total = max(self.per_epoch * cfg.epochs, 1)
        self.done, self.epoch = 0, 0

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self, epoch: int) -> list[np.ndarray]:
        n = len(self.centers)
        if self.p_pair is None:
            order = np.arange(n)
        else:  # subsampling / dynamic window, drawn afresh each epoch
            order = np.flatnonzero(self.rng.random(n, dtype=np.float32) < self.p_pair)
        if self.cap and len(order) > self.cap:  # cut short: a random stretch of the corpus
            order = np.roll(order, -int(self.rng.integers(len(order))))[: self.cap]
        return [order]

    def train_step(self, compute, batch: np.ndarray, scale: float) -> tuple[torch.Tensor, int]:
        from models.sgns_cpu import sgns_epoch

        c, seed = self.cfg, self.cfg.seed + self.epoch
        mean = sgns_epoch(self.win, self.wout, self.centers, self.contexts, batch, self.noise,
                          c.negatives, c.lr, self.done, self.total, seed, self.kernel)  # fmt: skip
        self.done += len(batch)
        return torch.tensor(mean, dtype=torch.float64), len(batch)  # float64: the mean is exact

    def state_dict(self) -> dict:
        return {"numpy": self.rng.bit_generator.state, "done": self.done}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["numpy"]
        self.done = state["done"]


def make_recipe(
    pairs: np.ndarray, counts: np.ndarray, cfg, distance: np.ndarray | None = None
) -> Recipe:
    """The recipe for `pairs` (int [N, 2] center, context) and token frequencies `counts`.

    cfg: the train section (model, embed_size, batch_size, lr, epochs, kernel, ...). distance:
    each pair's window distance, needed by cfg.dynamic_window."""
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    if len(pairs) == 0:
        raise ValueError("no training pairs: every document has fewer than 2 in-vocabulary tokens")
    p_pair = pair_probability(pairs, counts, cfg, distance)
    kernel = cpu_kernel(cfg, device) if cfg.model == "sgns" else None
    if kernel:
        return KernelRecipe(pairs, counts, cfg, p_pair, kernel)
    return PairRecipe(pairs, counts, cfg, p_pair, device)


def recipe(pairs: str, vocab: str, cfg, warm: dict | None = None) -> Recipe:
    """The recipe of a windows stage folder `pairs` and a vocab stage folder `vocab`: what
    `Build("tasks.train.word2vec:recipe", {...})` makes in the flow and on every DDP rank.
    warm: {"version", "run_id"} of the registered model to warm-start from (the recipe's
    `warm_tokens`: how many tokens it carried over; None without one)."""
    from tasks.vocab import read_vocab
    from tasks.windows import read_distances, read_pairs

    id2tok, counts = read_vocab(StageOutput.at("vocab", vocab))
    windows = StageOutput.at("windows", pairs)
    distance = read_distances(windows) if cfg.dynamic_window else None
    built = make_recipe(read_pairs(windows), counts, cfg, distance)
    built.warm_tokens = _warm_start(built.model, warm, id2tok) if warm else None
    return built


def _warm_start(model: nn.Module, warm: dict, id2tok: list[str]) -> int:
    """Copy the rows of tokens the registered model `warm` knows into the fresh `model`;
    how many tokens were carried over."""
    from tasks.engine import tracking

    old = tracking.load_model(NAME, warm["version"])
    old_vocab = tracking.load_json(warm["run_id"], "vocab.json")
    carried = warm_start(model, old, old_vocab, id2tok)
    log.info(
        "warm start from %s version %s: %d of %d tokens keep their vectors, %d start fresh",
        NAME, warm["version"], carried, len(id2tok), len(id2tok) - carried,
    )  # fmt: skip
    return carried


def check_ddp(cfg) -> None:
    """Settings train.nproc > 1 cannot run, refused before any work, with the fix. Only the
    softmax model: sgns draws noise words per pair (a rank's draws would not be the one
    process's) and its sparse gradients / in-place kernel have no DDP all-reduce."""
    if cfg.nproc > 1 and cfg.model != "softmax":
        raise ValueError(
            f"train.nproc={cfg.nproc}: data-parallel training covers the softmax model only; "
            "set train.model=softmax or train.nproc=1"
        )


# -- training ---------------------------------------------------------------------------------


def train_word2vec(
    pairs: np.ndarray,
    counts: np.ndarray,
    cfg,
    distance: np.ndarray | None = None,
    checkpoints: Path | None = None,
) -> tuple[Recipe, Fitted]:
    """make_recipe + fit in this process (tests, benchmarks): no MLflow run; (the recipe, its
    model trained; the record), as `fit` returns them. checkpoints: a folder for one
    checkpoint per epoch, resumed after the newest one found there."""
    built = make_recipe(pairs, counts, cfg, distance)
    return fit(built, Plan.of(cfg, nproc=1), checkpoints=checkpoints)


@task(name="train", cache_policy=NO_CACHE)
def train_task(
    pairs: StageOutput, vocab: StageOutput, cfg, run_id: str, checkpoints: str | None = None,
    meta: dict | None = None,
) -> tuple[nn.Module, Fitted]:  # fmt: skip
    """Train on the Parquet pairs (train.nproc DDP ranks read them too); the runtime logs the
    per-epoch metrics to the MLflow run as they happen and resumes from `checkpoints`.
    meta: stored with each checkpoint, with the vocabulary, so `seqflow log-model` can log it
    later. Returns (the trained model, the runtime's record of its training)."""
    from tasks.engine import tracking
    from tasks.vocab import read_vocab

    logger = run_logger()
    id2tok, counts = read_vocab(vocab)
    champ = tracking.champion(NAME) if cfg.warm_start else None
    if cfg.warm_start and champ is None:
        logger.info("warm start: no champion yet, training from scratch")
    warm = None if champ is None else {"version": str(champ.version), "run_id": champ.run_id}
    logger.info("training %s on %s pairs, vocab %d, device %s%s", cfg.model,
                pairs.stats.get("pairs", "?"), len(counts), pick_device(cfg.device),
                f", {cfg.nproc} DDP ranks" if cfg.nproc > 1 else "")  # fmt: skip
    if warm:
        tracking.set_tags(run_id, {"warm_start_from": f"{NAME}/{warm['version']}"})
    if cfg.nproc > 1:
        tracking.set_tags(run_id, {"ddp_world_size": cfg.nproc})
    meta = {"pipeline": NAME, "run_id": run_id, "run_ids": [run_id], "vocab": id2tok,
            "model": cfg.model, "embed_size": cfg.embed_size, "epochs": cfg.epochs,
            **(meta or {})}  # fmt: skip
    build = Build("tasks.train.word2vec:recipe",
                  {"pairs": pairs.path, "vocab": vocab.path, "cfg": cfg, "warm": warm})  # fmt: skip
    built, fitted = fit(build, Plan.of(cfg), checkpoints=Path(checkpoints) if checkpoints else None,
                        run_id=run_id, meta=meta)  # fmt: skip
    if built.warm_tokens is not None:
        tracking.log_metrics(run_id, {"warm_start_tokens": built.warm_tokens})
    return built.model, fitted
