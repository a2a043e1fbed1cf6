"""A Transformer encoder-decoder for translation (Vaswani et al., 2017), pre-norm, with
sinusoidal positions, the target embedding tied to the output layer, and attention through
`F.scaled_dot_product_attention`.

Same interface as models.seq2seq.Seq2Seq (time-major [len, batch] ids; `loss`, `greedy`,
plus batched `beam`), so the runtime, checkpoints, evaluation and serving are shared. The
loss projects only the non-pad target positions onto the vocabulary.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn


def positions(length: int, dim: int, device) -> torch.Tensor:
    """Sinusoidal position codes [length, dim]."""
    pos = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim, device=device)
    out[:, 0::2], out[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return out


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x, memory, mask=None, causal=False):
        """x [B, T, D] attends over memory [B, S, D]; mask [B, 1, 1, S] (True = keep)."""
        b, t, d = x.shape
        q = self.q(x).view(b, t, self.heads, -1).transpose(1, 2)
        k, v = self.kv(memory).view(b, memory.shape[1], 2, self.heads, -1).unbind(2)
        y = F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2), mask,
                                           self.dropout if self.training else 0.0,
                                           is_causal=causal)  # fmt: skip
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-norm: self-attention, (cross-attention), feed-forward, each a residual branch."""

    def __init__(self, dim: int, heads: int, ffn: int, dropout: float, cross: bool):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads, dropout)
        self.cross = Attention(dim, heads, dropout) if cross else None
        self.norm2 = nn.LayerNorm(dim) if cross else None
        self.norm3 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(ffn, dim))  # fmt: skip
        self.drop = nn.Dropout(dropout)

    def forward(self, x, self_mask=None, memory=None, memory_mask=None):
        h = self.norm1(x)
        x = x + self.drop(self.attn(h, h, self_mask, causal=self.cross is not None))
        if self.cross is not None:
            x = x + self.drop(self.cross(self.norm2(x), memory, memory_mask))
        return x + self.drop(self.ffn(self.norm3(x)))


class Transformer(nn.Module):
    def __init__(self, src_vocab: int, trg_vocab: int, dim: int = 256, heads: int = 8,
                 enc_layers: int = 3, dec_layers: int = 3, ffn: int = 512, dropout: float = 0.1,
                 label_smoothing: float = 0.1, pad_idx: int = 1):  # fmt: skip
        super().__init__()
        self.dim, self.pad_idx, self.smoothing = dim, pad_idx, label_smoothing
        self.src_emb = nn.Embedding(src_vocab, dim, padding_idx=pad_idx)
        self.trg_emb = nn.Embedding(trg_vocab, dim, padding_idx=pad_idx)
        self.encoder = nn.ModuleList(Block(dim, heads, ffn, dropout, False)
                                     for _ in range(enc_layers))  # fmt: skip
        self.decoder = nn.ModuleList(Block(dim, heads, ffn, dropout, True)
                                     for _ in range(dec_layers))  # fmt: skip
        self.enc_norm, self.dec_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.out_bias = nn.Parameter(torch.zeros(trg_vocab))  # output weight = trg_emb
        self.drop = nn.Dropout(dropout)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        nn.init.normal_(self.src_emb.weight, 0, dim**-0.5)
        nn.init.normal_(self.trg_emb.weight, 0, dim**-0.5)

    def _embed(self, emb: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
        x = emb(ids) * math.sqrt(self.dim) + positions(ids.shape[1], self.dim, ids.device)
        return self.drop(x)

    def encode(self, src: torch.Tensor):
        """src [B, S] -> (memory [B, S, D], mask [B, 1, 1, S])."""
        mask = (src != self.pad_idx)[:, None, None, :]
        x = self._embed(self.src_emb, src)
        for block in self.encoder:
            x = block(x, mask)
        return self.enc_norm(x), mask

    def decode(self, trg: torch.Tensor, memory, mask) -> torch.Tensor:
        """trg [B, T] -> features [B, T, D] (position t sees trg[:, :t + 1])."""
        x = self._embed(self.trg_emb, trg)
        for block in self.decoder:
            x = block(x, None, memory, mask)
        return self.dec_norm(x)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(features, self.trg_emb.weight, self.out_bias)

    def loss(self, src, trg, pad_idx: int, teacher_forcing_ratio: float = 1.0) -> torch.Tensor:
        """Mean label-smoothed cross-entropy over trg[1:]'s non-pad tokens (time-major ids;
        always teacher-forced). Pads sit at the end, so causal attention never reads one."""
        src, trg = src.T, trg.T
        memory, mask = self.encode(src)
        feats = self.decode(trg[:, :-1], memory, mask)
        target = trg[:, 1:]
        keep = target != pad_idx
        smoothing = self.smoothing if self.training else 0.0
        return F.cross_entropy(self.logits(feats[keep]), target[keep], label_smoothing=smoothing)

    @torch.no_grad()
    def greedy(self, src, sos: int, eos: int, max_len: int = 50) -> list[list[int]]:
        return self.beam(src, sos, eos, max_len, 1, 0.0)

    @torch.no_grad()
    def beam(self, src, sos: int, eos: int, max_len: int = 50, width: int = 5,
             alpha: float = 0.6) -> list[list[int]]:  # fmt: skip
        """Batched beam search (width 1: greedy) over time-major src [S, B]. Finished
        hypotheses keep their score; the winner maximises log p / ((5 + len) / 6) ** alpha
        (GNMT's length penalty). Each hypothesis stops at <eos> (not included)."""
        memory, mask = self.encode(src.T)
        b, k = memory.shape[0], width
        memory, mask = memory.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)
        tokens = torch.full((b * k, 1), sos, dtype=torch.long, device=src.device)
        scores = torch.zeros(b, k, device=src.device)
        scores[:, 1:] = float("-inf")  # one live beam per sentence at the start
        done = torch.zeros(b * k, dtype=torch.bool, device=src.device)
        lengths = torch.zeros(b * k, device=src.device)
        for _ in range(max_len):
            logp = F.log_softmax(self.logits(self.decode(tokens, memory, mask)[:, -1]), -1)
            logp[done] = float("-inf")
            logp[done, eos] = 0.0  # a finished hypothesis only extends by <eos>, for free
            vocab = logp.shape[1]
            top = (scores.view(-1, 1) + logp).view(b, k * vocab).topk(k, 1)
            origin = (torch.arange(b, device=src.device) * k).unsqueeze(1) + top.indices // vocab
            origin = origin.view(-1)
            new = (top.indices % vocab).view(-1, 1)
            tokens = torch.cat([tokens[origin], new], 1)
            lengths = lengths[origin] + (~done[origin]).float()
            done = done[origin] | (new.squeeze(1) == eos)
            scores = top.values
            if bool(done.all()):
                break
        best = (scores / ((5 + lengths.view(b, k)) / 6) ** alpha).argmax(1)
        chosen = tokens.view(b, k, -1)[torch.arange(b), best, 1:].tolist()
        return [seq[: seq.index(eos)] if eos in seq else seq for seq in chosen]
