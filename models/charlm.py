"""The notebook's character-level language models (Redes Recurrentes: Don Quijote letra por letra).

Inputs are one-hot vectors over the character vocabulary, as in the notebook (no embedding
layer); a linear layer maps the hidden state of EVERY step to logits over the vocabulary. The
notebook cuts the text into windows of 32 + 1 characters and trains on
``features, tags = window[:, :-1], window[:, 1:]``: each position predicts the character that
follows it. So ``CharLM.forward(ids [batch, time]) -> logits [batch, time, vocab]``, where
``logits[:, t]`` scores ``ids``' next character after position t.

Scratch cells (`RNNScratch`, `LSTMScratch`, `GRUScratch`) keep the notebook's gate equations
with explicit weight matrices, stored fused per side: ``W_x [input, gates*hidden]``,
``W_h [hidden, gates*hidden]``, ``b [gates*hidden]``, blocks in the notebook's gate order
(LSTM: input, forget, output, candidate; GRU: update z, reset r, candidate). Their forward
computes the input projections of all time steps in one matrix product and loops over time
only for the recurrence, whose backward pass is written out by hand (models/recurrence.py).
`step_reference` is the notebook's per-step formulation (one matmul
per gate and side inside the loop) and must give the same outputs.

Tensors are batch-major: [batch, time, features].
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from models import recurrence
from models.charlm_kinds import KINDS

INIT_STD = 0.01  # the notebook's scratch initialisation: randn * 0.01, zero biases


def _weight(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) * INIT_STD)


class _ScratchCell(nn.Module):
    """Shared layout: fused W_x, W_h, b with `n_gates` blocks of `num_hiddens` columns."""

    n_gates = 1
    gate_names: tuple[str, ...] = ("h",)

    def __init__(self, num_inputs: int, num_hiddens: int):
        super().__init__()
        self.num_inputs = num_inputs
        self.num_hiddens = num_hiddens
        g = self.n_gates * num_hiddens
        self.W_x = _weight(num_inputs, g)
        self.W_h = _weight(num_hiddens, g)
        self.b = nn.Parameter(torch.zeros(g))

    def gate(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One gate's (W_x, W_h, b) block, as the notebook's separate W_x?, W_h?, b_? (views)."""
        k = self.gate_names.index(name)
        s = slice(k * self.num_hiddens, (k + 1) * self.num_hiddens)
        return self.W_x[:, s], self.W_h[:, s], self.b[s]

    def _check(self, x: torch.Tensor) -> None:
        if x.shape[-1] != self.num_inputs:
            raise ValueError(f"expected {self.num_inputs} input features, got {x.shape[-1]}")

    def zeros(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(batch, self.num_hiddens)


class RNNScratch(_ScratchCell):
    """H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h)."""

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
        """x [B, T, I], state h [B, H] or None (zeros) -> (outputs [B, T, H], h [B, H])."""
        self._check(x)
        h0 = self.zeros(x.shape[0], x) if state is None else state
        return recurrence.rnn(x, self.W_x, self.b, self.W_h, h0)


class LSTMScratch(_ScratchCell):
    """I, F, O = sigmoid(X W_x? + H W_h? + b_?); C~ = tanh(X W_xc + H W_hc + b_c);
    C = F * C + I * C~; H = O * tanh(C)."""

    n_gates = 4
    gate_names = ("i", "f", "o", "c")

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        """x [B, T, I], state (h, c) [B, H] each or None -> (outputs [B, T, H], (h, c))."""
        self._check(x)
        if state is None:
            h = c = self.zeros(x.shape[0], x)
        else:
            h, c = state
        return recurrence.lstm(x, self.W_x, self.b, self.W_h, h, c)


class GRUScratch(_ScratchCell):
    """Z, R = sigmoid(X W_x? + H W_h? + b_?); H = Z * H + (1 - Z) * H~ where

    - reset_after=False (the notebook, Cho et al. 2014): H~ = tanh(X W_xh + (R * H) W_hh + b_h);
    - reset_after=True (torch.nn.GRU, cuDNN): H~ = tanh(X W_xh + b_h + R * (H W_hh + b_hn)),
      with an extra hidden-side candidate bias `b_hn`.

    The two are different functions; only reset_after=True can match torch.nn.GRU.
    """

    n_gates = 3
    gate_names = ("z", "r", "h")

    def __init__(self, num_inputs: int, num_hiddens: int, reset_after: bool = False):
        super().__init__(num_inputs, num_hiddens)
        self.reset_after = reset_after
        self.b_hn = nn.Parameter(torch.zeros(num_hiddens)) if reset_after else None

    def forward(self, x: torch.Tensor, state: torch.Tensor | None = None):
        """x [B, T, I], state h [B, H] or None (zeros) -> (outputs [B, T, H], h [B, H])."""
        self._check(x)
        n = self.num_hiddens
        h = self.zeros(x.shape[0], x) if state is None else state
        if not self.reset_after:
            return recurrence.gru(x, self.W_x, self.b, self.W_h, h)
        outputs = []  # torch.nn.GRU's variant, only for loading its weights: autograd
        for xt in recurrence.project(x, self.W_x, self.b).transpose(0, 1):
            hp = h @ self.W_h
            z, r = torch.sigmoid(xt[:, : 2 * n] + hp[:, : 2 * n]).chunk(2, dim=1)
            cand = torch.tanh(xt[:, 2 * n :] + r * (hp[:, 2 * n :] + self.b_hn))
            h = z * h + (1 - z) * cand
            outputs.append(h)
        return _stack(outputs, x, n), h


def _stack(outputs: list[torch.Tensor], x: torch.Tensor, n: int) -> torch.Tensor:
    if not outputs:  # zero-length sequence
        return x.new_zeros(x.shape[0], 0, n)
    return torch.stack(outputs, dim=1)


def step_reference(cell: _ScratchCell, x: torch.Tensor, state=None):
    """The notebook's per-step formulation of `cell` (input projection inside the time loop,
    one matmul per gate and side), for checking and benchmarking the fused forward.
    Same arguments and outputs as ``cell(x, state)``."""
    B, T, _ = x.shape
    zeros = x.new_zeros(B, cell.num_hiddens)

    def pre(name: str, X: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
        W_x, W_h, b = cell.gate(name)
        return torch.matmul(X, W_x) + torch.matmul(H, W_h) + b

    outputs = []
    if isinstance(cell, LSTMScratch):
        H, C = (zeros, zeros) if state is None else state
        for t in range(T):
            X = x[:, t]
            I = torch.sigmoid(pre("i", X, H))  # noqa: E741
            Fg = torch.sigmoid(pre("f", X, H))
            O = torch.sigmoid(pre("o", X, H))  # noqa: E741
            C_tilda = torch.tanh(pre("c", X, H))
            C = Fg * C + I * C_tilda
            H = O * torch.tanh(C)
            outputs.append(H)
        return _stack(outputs, x, cell.num_hiddens), (H, C)
    H = zeros if state is None else state
    for t in range(T):
        X = x[:, t]
        if isinstance(cell, GRUScratch):
            Z = torch.sigmoid(pre("z", X, H))
            R = torch.sigmoid(pre("r", X, H))
            W_xh, W_hh, b_h = cell.gate("h")
            if cell.reset_after:
                H_tilda = torch.tanh(X @ W_xh + b_h + R * (H @ W_hh + cell.b_hn))
            else:
                H_tilda = torch.tanh(X @ W_xh + (R * H) @ W_hh + b_h)
            H = Z * H + (1 - Z) * H_tilda
        elif isinstance(cell, RNNScratch):
            H = torch.tanh(pre("h", X, H))
        else:
            raise TypeError(f"not a scratch cell: {type(cell).__name__}")
        outputs.append(H)
    return _stack(outputs, x, cell.num_hiddens), H


# torch's gate blocks, reordered into the scratch cells' order
_TORCH_ORDER = {
    LSTMScratch: (0, 1, 3, 2),  # torch i, f, g, o -> i, f, o, c
    GRUScratch: (1, 0, 2),  # torch r, z, n -> z, r, h
    RNNScratch: (0,),
}


@torch.no_grad()
def load_torch_weights(cell: _ScratchCell, module: nn.RNNBase) -> _ScratchCell:
    """Copy a one-layer, unidirectional torch.nn.RNN (tanh) / LSTM / GRU into `cell` so that
    both compute the same function (GRU needs ``reset_after=True``). Returns `cell`."""
    expected = {RNNScratch: nn.RNN, LSTMScratch: nn.LSTM, GRUScratch: nn.GRU}[type(cell)]
    if not isinstance(module, expected):
        raise TypeError(f"{type(cell).__name__} loads from {expected.__name__}")
    if module.num_layers != 1 or module.bidirectional or getattr(module, "proj_size", 0):
        raise ValueError("only one-layer, unidirectional modules without projections")
    if isinstance(module, nn.RNN) and module.nonlinearity != "tanh":
        raise ValueError("RNNScratch uses tanh")
    if isinstance(cell, GRUScratch) and not cell.reset_after:
        raise ValueError("torch.nn.GRU computes the reset_after=True candidate")
    if (module.input_size, module.hidden_size) != (cell.num_inputs, cell.num_hiddens):
        raise ValueError("input/hidden sizes differ")
    order = _TORCH_ORDER[type(cell)]
    n_gates = len(order)

    def blocks(t: torch.Tensor) -> list[torch.Tensor]:
        parts = t.chunk(n_gates, dim=0)
        return [parts[k] for k in order]

    w_ih = torch.cat(blocks(module.weight_ih_l0))
    w_hh = torch.cat(blocks(module.weight_hh_l0))
    if module.bias:
        b_ih, b_hh = blocks(module.bias_ih_l0), blocks(module.bias_hh_l0)
    else:
        b_ih = b_hh = [module.weight_ih_l0.new_zeros(cell.num_hiddens)] * n_gates
    if isinstance(cell, GRUScratch):  # b_hn stays inside r * (...)
        b = torch.cat([b_ih[0] + b_hh[0], b_ih[1] + b_hh[1], b_ih[2]])
        cell.b_hn.copy_(b_hh[2])
    else:
        b = torch.cat([i + h for i, h in zip(b_ih, b_hh, strict=True)])
    cell.W_x.copy_(w_ih.T)
    cell.W_h.copy_(w_hh.T)
    cell.b.copy_(b)
    return cell


_SCRATCH = {"rnn_scratch": RNNScratch, "lstm_scratch": LSTMScratch, "gru_scratch": GRUScratch}
_TORCH = {
    "rnn": nn.RNN,
    "lstm": nn.LSTM,
    "gru": nn.GRU,
    "lstm_deep": nn.LSTM,
    "lstm_bidir": nn.LSTM,
}


class CharLM(nn.Module):
    """One-hot characters -> recurrent layer(s) -> linear over the vocabulary at every step.

    kind: one of KINDS. Scratch kinds stack `n_layers` scratch cells; the others use
    torch.nn.RNN/LSTM/GRU (batch_first). n_layers defaults to 1, and to 2 for lstm_deep and
    lstm_bidir (the notebook builds both with num_layers=2); lstm_deep needs at least 2.
    lstm_bidir is a bidirectional LSTM whose output layer reads both directions
    (2 * hidden features): its backward half has read the characters it must predict, so
    `sees_future` is True and its perplexity is not a next-character perplexity.
    dropout applies between stacked layers and to the last layer's outputs before the linear.
    weight_drop (torch kinds) drops hidden-to-hidden weights while training, one mask per
    batch for every step (DropConnect, as AWD-LSTM); the saved weights keep their names.
    The state starts at zeros.
    """

    def __init__(
        self,
        vocab_size: int,
        kind: str,
        hidden: int = 32,
        n_layers: int | None = None,
        dropout: float = 0.0,
        weight_drop: float = 0.0,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
        if n_layers is None:
            n_layers = 2 if kind in ("lstm_deep", "lstm_bidir") else 1
        if n_layers < 1 or (kind == "lstm_deep" and n_layers < 2):
            raise ValueError(f"{kind}: n_layers={n_layers} is too few")
        if weight_drop and kind in _SCRATCH:
            raise ValueError(f"{kind}: weight_drop applies to the torch kinds only; set it to 0")
        self.vocab_size = vocab_size
        self.kind = kind
        self.hidden = hidden
        self.n_layers = n_layers
        self.sees_future = kind == "lstm_bidir"
        self.weight_drop = weight_drop
        directions = 2 if self.sees_future else 1
        if kind in _SCRATCH:
            cls = _SCRATCH[kind]
            self.cells = nn.ModuleList(
                cls(vocab_size if k == 0 else hidden, hidden) for k in range(n_layers)
            )
            self.rnn = None
        else:
            self.cells = None
            self.rnn = _TORCH[kind](
                vocab_size,
                hidden,
                n_layers,
                batch_first=True,
                dropout=dropout if n_layers > 1 else 0.0,
                bidirectional=self.sees_future,
            )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(directions * hidden, vocab_size)

    def one_hot(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T] -> one-hot [B, T, V] in the parameters' dtype."""
        return F.one_hot(ids, self.vocab_size).to(self.output.weight.dtype)

    def run(self, ids: torch.Tensor, state=None):
        """ids [B, T] -> (logits [B, T, V], state). `state` (None = zeros) is what a previous
        call returned: carry it to continue a text without re-reading it (not for lstm_bidir,
        whose backward direction needs the whole sequence)."""
        x = self.one_hot(ids)
        if self.cells is not None:
            states = [None] * len(self.cells) if state is None else list(state)
            for k, cell in enumerate(self.cells):
                if k:
                    x = self.dropout(x)
                x, states[k] = cell(x, states[k])
            new_state = tuple(states)
        elif self.weight_drop and self.training:
            dropped = {
                name: F.dropout(w, self.weight_drop)
                for name, w in self.rnn.named_parameters()
                if name.startswith("weight_hh")
            }
            x, new_state = torch.func.functional_call(self.rnn, dropped, (x, state))
        else:
            x, new_state = self.rnn(x, state)
        return self.output(self.dropout(x)), new_state

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T] -> logits [B, T, V]; logits[:, t] predicts the character after ids[:, t]."""
        return self.run(ids)[0]


class CharEnsemble(nn.Module):
    """Several next-character CharLMs of one setup (seeds differ) read the same text; the
    ensemble's next-character distribution is the mean of theirs. `run` returns log-probabilities
    as logits (softmax gives the mean back, so perplexity and sampling read them as any
    CharLM's) and a tuple of the members' states."""

    def __init__(self, members: list[CharLM]):
        super().__init__()
        first = members[0]
        if first.sees_future:
            raise ValueError("lstm_bidir reads the characters it predicts: it is never an ensemble")
        if any((m.vocab_size, m.kind) != (first.vocab_size, first.kind) for m in members):
            raise ValueError("ensemble members must share the vocabulary and the kind")
        self.members = nn.ModuleList(members)
        self.vocab_size, self.kind, self.sees_future = first.vocab_size, first.kind, False
        self.hidden, self.n_layers = first.hidden, first.n_layers

    def run(self, ids: torch.Tensor, state=None):
        """ids [B, T] -> (log of the members' mean probabilities [B, T, V], their states)."""
        states = [None] * len(self.members) if state is None else state
        logps, new_states = [], []
        for member, s in zip(self.members, states, strict=True):
            logits, s = member.run(ids, s)
            logps.append(F.log_softmax(logits, dim=-1))
            new_states.append(s)
        mean = torch.logsumexp(torch.stack(logps), dim=0) - math.log(len(self.members))
        return mean, tuple(new_states)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.run(ids)[0]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
