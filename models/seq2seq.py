"""The notebook's Seq2Seq (Laboratorio 4, part 2): a multi-layer LSTM encoder whose final
states start a multi-layer LSTM decoder (Sutskever et al., 2014). Tensors are time-major:
[len, batch], as in the notebook.

`Seq2Seq.forward` keeps the notebook's interface (logits for every step, step 0 all zeros);
`Seq2Seq.loss` computes the same loss faster: the output projection runs once, on the non-pad
positions only, and no [len, batch, vocab] buffer is filled step by step.
"""

import torch
import torch.nn.functional as F
from torch import nn


class Encoder(nn.Module):
    def __init__(self, input_dim: int, emb_dim: int, hid_dim: int, n_layers: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(input_dim, emb_dim)
        self.rnn = nn.LSTM(emb_dim, hid_dim, n_layers, dropout=dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, (hidden, cell) = self.rnn(self.dropout(self.embedding(src)))  # src [S, B]
        return hidden, cell  # [layers, B, H] each


class Decoder(nn.Module):
    def __init__(self, output_dim: int, emb_dim: int, hid_dim: int, n_layers: int, dropout: float):
        super().__init__()
        self.output_dim = output_dim
        self.embedding = nn.Embedding(output_dim, emb_dim)
        self.rnn = nn.LSTM(emb_dim, hid_dim, n_layers, dropout=dropout)
        self.fc_out = nn.Linear(hid_dim, output_dim)
        self.dropout = nn.Dropout(dropout)

    def step(self, token: torch.Tensor, hidden, cell):
        """One decoding step for tokens [B]: the top layer's output [B, H] and the new states."""
        embedded = self.dropout(self.embedding(token.unsqueeze(0)))  # [1, B, E]
        output, (hidden, cell) = self.rnn(embedded, (hidden, cell))
        return output.squeeze(0), hidden, cell

    def forward(self, token: torch.Tensor, hidden, cell):
        output, hidden, cell = self.step(token, hidden, cell)
        return self.fc_out(output), hidden, cell  # logits [B, V]


class Seq2Seq(nn.Module):
    def __init__(
        self,
        src_vocab: int,
        trg_vocab: int,
        emb_dim: int = 256,
        hid_dim: int = 512,
        n_layers: int = 2,
        dropout: float = 0.5,
        init_range: float = 0.08,
    ):
        super().__init__()
        self.encoder = Encoder(src_vocab, emb_dim, hid_dim, n_layers, dropout)
        self.decoder = Decoder(trg_vocab, emb_dim, hid_dim, n_layers, dropout)
        for param in self.parameters():  # the paper's U(-0.08, 0.08) for every weight
            nn.init.uniform_(param, -init_range, init_range)

    def forward(self, src: torch.Tensor, trg: torch.Tensor, teacher_forcing_ratio: float = 0.5):
        """The notebook's forward: logits [T, B, V] (row 0 stays zero)."""
        hidden, cell = self.encoder(src)
        shape = (trg.shape[0], trg.shape[1], self.decoder.output_dim)
        outputs = torch.zeros(shape, device=src.device)
        token = trg[0]
        forced = torch.rand(trg.shape[0]).tolist()
        for t in range(1, trg.shape[0]):
            logits, hidden, cell = self.decoder(token, hidden, cell)
            outputs[t] = logits
            token = trg[t] if forced[t] < teacher_forcing_ratio else logits.argmax(1)
        return outputs

    def loss(
        self, src: torch.Tensor, trg: torch.Tensor, pad_idx: int, teacher_forcing_ratio: float = 0.5
    ) -> torch.Tensor:
        """Mean cross-entropy over the non-pad target tokens trg[1:], as forward + the
        notebook's criterion give, with each step teacher-forced with the given probability.
        Always forced (ratio 1): the decoder reads trg[:-1] in one LSTM call (one cuDNN kernel
        on a GPU) instead of step by step; the same loss."""
        hidden, cell = self.encoder(src)
        if teacher_forcing_ratio >= 1:
            embedded = self.decoder.dropout(self.decoder.embedding(trg[:-1]))  # [T-1, B, E]
            tops, _ = self.decoder.rnn(embedded, (hidden, cell))  # [T-1, B, H]
        else:
            tops = self._decode_steps(trg, hidden, cell, teacher_forcing_ratio)
        target = trg[1:]
        keep = target != pad_idx
        logits = self.decoder.fc_out(tops[keep])  # [non-pad tokens, V]
        return F.cross_entropy(logits, target[keep])

    def _decode_steps(self, trg: torch.Tensor, hidden, cell, ratio: float) -> torch.Tensor:
        """The top layer's outputs [T-1, B, H], one step at a time; each step's input is the
        true token with probability `ratio`, else the previous step's prediction."""
        forced = torch.rand(trg.shape[0]).tolist()
        token = trg[0]
        tops = []
        for t in range(1, trg.shape[0]):
            top, hidden, cell = self.decoder.step(token, hidden, cell)
            tops.append(top)
            if t + 1 < trg.shape[0]:
                if forced[t] < ratio:
                    token = trg[t]
                else:
                    with torch.no_grad():
                        token = self.decoder.fc_out(top).argmax(1)
        return torch.stack(tops)

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, sos: int, eos: int, max_len: int = 50) -> list[list[int]]:
        """Greedy decoding of a batch; each hypothesis stops at <eos> (not included)."""
        hidden, cell = self.encoder(src)
        token = torch.full((src.shape[1],), sos, dtype=torch.long, device=src.device)
        steps = []
        done = torch.zeros(src.shape[1], dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            logits, hidden, cell = self.decoder(token, hidden, cell)
            token = logits.argmax(1)
            steps.append(token)
            done |= token == eos
            if bool(done.all()):
                break
        out = torch.stack(steps, 1).tolist() if steps else [[] for _ in range(src.shape[1])]
        return [seq[: seq.index(eos)] if eos in seq else seq for seq in out]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
