"""The Seq2Seq translator's training pieces for the runtime (tasks/runtime): a Recipe with
length-bucketed batches, the loss over non-pad target tokens and the validation loss; greedy
decoding and corpus BLEU for evaluation."""

import math
import re
from typing import NamedTuple

import numpy as np
import torch

from models.seq2seq import Seq2Seq
from tasks.engine.accel import compiled, to_device, use_cudnn
from tasks.engine.stage import StageOutput
from tasks.runtime.loop import Recipe, pick_device, seed_everything
from tasks.translation import EOS, PAD, SOS, SPECIALS, read_split


def pad_batch(seqs: list[np.ndarray], device, length: int | None = None) -> torch.Tensor:
    """Time-major [length (default: the longest), batch] int64, padded with <pad>."""
    out = np.full((length or max(map(len, seqs)), len(seqs)), PAD, dtype=np.int64)
    for j, s in enumerate(seqs):
        out[: len(s), j] = s
    return to_device(out, device)  # pinned, non-blocking to a GPU


def bucket_batches(
    src: list, trg: list, batch_size: int, rng: np.random.Generator | None, max_tokens=None
) -> list[np.ndarray]:
    """Index batches of similar lengths (random order among equals), the batches themselves
    shuffled; rng=None keeps a fixed order (evaluation). Without max_tokens: batch_size
    sentences sorted by source then target length; with it, sentences sorted by the longest
    side's length are cut so that sentences x that length <= max_tokens."""
    n = len(src)
    tiebreak = rng.random(n) if rng is not None else np.arange(n)
    if max_tokens:
        longest = np.maximum([len(s) for s in src], [len(t) for t in trg])
        order = np.lexsort((tiebreak, longest))
        batches, start = [], 0
        for end in range(1, n + 1):
            if end == n or (end + 1 - start) * longest[order[end]] > max_tokens:
                batches.append(order[start:end])
                start = end
    else:
        order = np.lexsort((tiebreak, [len(t) for t in trg], [len(s) for s in src]))
        batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def random_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Plain shuffled batches (no bucketing): more padding."""
    order = rng.permutation(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def build_model(cfg, src_vocab: int, trg_vocab: int):
    if cfg.model == "transformer":
        from models.transformer import Transformer

        return Transformer(src_vocab, trg_vocab, cfg.emb_dim, cfg.heads, cfg.n_layers,
                           cfg.n_layers, cfg.hid_dim, cfg.dropout, cfg.label_smoothing,
                           PAD)  # fmt: skip
    if cfg.model == "attention":
        from models.attention import AttnSeq2Seq

        return AttnSeq2Seq(src_vocab, trg_vocab, cfg.emb_dim, cfg.hid_dim, cfg.dropout)
    return Seq2Seq(src_vocab, trg_vocab, cfg.emb_dim, cfg.hid_dim, cfg.n_layers, cfg.dropout,
                   cfg.init_range)  # fmt: skip


class Batch(NamedTuple):
    """Sentence indices and the global batch's padded lengths: every DDP rank pads its slice
    to them, so the (unpacked) LSTMs and the teacher-forcing draws see what one process sees."""

    idx: np.ndarray
    src_len: int
    trg_len: int


class Seq2SeqRecipe(Recipe):
    """The notebook's training: Adam, gradient clipping, teacher forcing, the epoch loss the
    mean of the batch losses, the best validation loss's weights kept."""

    name, unit, report = "seq2seq", "tokens", "batch"
    select = ("val_loss", "min")

    def __init__(self, train, valid, src_vocab: int, trg_vocab: int, cfg):
        self.cfg, self.clip = cfg, cfg.clip
        (self.src, self.trg), self.valid = train, valid
        # target tokens the loss averages, per sentence (trg[1:], never <pad>)
        self.tokens = np.array([int(np.count_nonzero(t[1:] != PAD)) for t in self.trg])
        self.device = pick_device(cfg.device)
        use_cudnn(self.device)
        seed_everything(cfg.seed)
        self.model = build_model(cfg, src_vocab, trg_vocab).to(self.device)
        if cfg.model == "transformer":  # Adam(0.9, 0.98), linear warm-up, 1/sqrt(step) decay
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr,
                                              betas=(0.9, 0.98), eps=1e-9)  # fmt: skip
            w = cfg.warmup

            def rate(step: int) -> float:
                return min((step + 1) / w, (w / (step + 1)) ** 0.5)

            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, rate)
            self.select = None  # the average of the last epochs' weights replaces selection
        else:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.average: dict[str, torch.Tensor] = {}  # sum of the last epochs' weights
        self.rng = np.random.default_rng(cfg.seed)  # the batches' stream, kept by checkpoints
        self.fast_loss = compiled(self.model.loss, cfg.compile)

    def batches(self, epoch: int) -> list[Batch]:
        bs, max_tokens = self.cfg.batch_size, self.cfg.max_tokens
        if max_tokens or self.cfg.bucket:
            order = bucket_batches(self.src, self.trg, bs, self.rng, max_tokens)
        else:
            order = random_batches(len(self.src), bs, self.rng)
        return [Batch(idx, max(len(self.src[i]) for i in idx), max(len(self.trg[i]) for i in idx))
                for idx in order]  # fmt: skip

    def shard(self, batch: Batch, rank: int, world: int) -> Batch:
        return batch._replace(idx=super().shard(batch.idx, rank, world))

    def count(self, batch: Batch) -> int:
        return int(self.tokens[batch.idx].sum())

    def loss(self, model, batch: Batch) -> tuple[torch.Tensor, int]:
        """(mean cross-entropy over the batch's non-pad target tokens, their count)."""
        if not len(batch.idx):  # a DDP rank's empty slice: no loss, but every parameter used
            return sum(p.sum() for p in model.parameters()) * 0.0, 0
        s = pad_batch([self.src[i] for i in batch.idx], self.device, batch.src_len)
        t = pad_batch([self.trg[i] for i in batch.idx], self.device, batch.trg_len)
        fn = self.fast_loss if model is self.model else model.loss
        return fn(s, t, PAD, self.cfg.teacher_forcing), self.count(batch)

    def evaluate(self, epoch: int) -> dict[str, float]:
        last, extra = self.cfg.average_last, {}
        if last > 1 and epoch >= self.cfg.epochs - last:  # checkpoint averaging
            for k, v in self.model.state_dict().items():
                self.average[k] = self.average.get(k, 0) + v.detach().double()
            if epoch == self.cfg.epochs - 1:  # the model becomes the average
                raw = evaluate_loss(self.model, self.valid, self.cfg.batch_size, self.device)
                extra = {"val_loss_unaveraged": raw}
                n = min(last, self.cfg.epochs)  # the epochs summed
                self.model.load_state_dict({k: (v / n).to(self.model.state_dict()[k])
                                            for k, v in self.average.items()})  # fmt: skip
        val = evaluate_loss(self.model, self.valid, self.cfg.batch_size, self.device)
        return {"val_loss": val, "train_ppl": math.exp(self.epoch_loss), "val_ppl": math.exp(val),
                **extra}  # fmt: skip

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "average": self.average}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.average = state.get("average", {})


def recipe(encoded: str, src_vocab: int, trg_vocab: int, cfg) -> Seq2SeqRecipe:
    """The recipe of an encoded stage folder (`Build("tasks.train.seq2seq:recipe", ...)`)."""
    folder = StageOutput.at("encoded", encoded)
    return Seq2SeqRecipe(read_split(folder, "train"), read_split(folder, "valid"), src_vocab,
                         trg_vocab, cfg)  # fmt: skip


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


ELIDING = ("fr", "it", "ca")  # languages whose elided articles spaCy splits off: l' herbe


def detokenize(tokens: list[str], lang: str = "en") -> str:
    """Spaces back out of spaCy tokens: none before punctuation or English clitics, nor (in
    French, Italian, Catalan) after an elided word (l'herbe, qu'il) or before -ce, -il."""
    text = " ".join(tokens)
    text = re.sub(r" ([.,!?;:%)])", r"\1", text)
    text = re.sub(r"([(]) ", r"\1", text)
    if lang in ELIDING:
        text = re.sub(r"(\w['’]) (?=\w)", r"\1", text)
        text = re.sub(r"(?<=\w) (?=-(?:ce|ci|là|il|elle|ils|elles|on|t|je|tu|nous|vous)\b)", "",
                      text)  # fmt: skip
    return re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", text)


def to_text(tokens: list[str], lang: str, subword=None) -> str:
    """A translation's tokens as text: the subword model's decoding (tasks/subword.py; the
    pipeline's specials dropped), else spaCy words with their spaces taken back out."""
    if subword is None:
        return detokenize(tokens, lang)
    return subword.decode([t for t in tokens if t not in SPECIALS])


@torch.no_grad()
def translate_ids(model, src: list[np.ndarray], device, max_len=50, batch=256, beam: int = 1,
                  alpha: float = 0.6) -> list[list[int]]:  # fmt: skip
    """Greedy decoding (beam 1, or a model without beam search) or batched beam search, in
    input order."""
    model.eval()
    out: list[list[int]] = [[] for _ in src]
    for idx in bucket_batches(src, src, batch, None):
        s = pad_batch([src[i] for i in idx], device)
        if beam > 1 and hasattr(model, "beam"):
            hyps = model.beam(s, SOS, EOS, max_len, beam, alpha)
        else:
            hyps = model.greedy(s, SOS, EOS, max_len)
        for i, h in zip(idx, hyps, strict=True):
            out[i] = h
    return out


def corpus_bleu(hypotheses: list[str], references: list[str]) -> float:
    """sacreBLEU (13a tokenization), case-insensitive: the word-level models write lowercase."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(hypotheses, [references], lowercase=True).score)


def cased_bleu(hypotheses: list[str], references: list[str]) -> tuple[float, str]:
    """sacreBLEU as translation systems are compared: 13a tokenization, cased. (score, the
    metric's signature, e.g. nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.5.1)."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU(tokenize="13a", lowercase=False)
    return float(bleu.corpus_score(hypotheses, [references]).score), str(bleu.get_signature())


def token_bleu(hypotheses: list[list[str]], references: list[list[str]]) -> float:
    """BLEU on tokens as given (lowercased spaCy tokens, <unk> included), 4-grams, uniform
    weights, brevity penalty: torchtext's `bleu_score` x 100, the pytorch-seq2seq tutorials'
    figure."""
    import sacrebleu

    hyps, refs = [" ".join(h) for h in hypotheses], [" ".join(r) for r in references]
    return float(sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", force=True).score)


def corpus_chrf(hypotheses: list[str], references: list[str]) -> float:
    """sacreBLEU chrF, case-insensitive."""
    from sacrebleu.metrics import CHRF

    return float(CHRF(lowercase=True).corpus_score(hypotheses, [references]).score)
