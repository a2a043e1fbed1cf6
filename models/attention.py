"""Seq2Seq with additive (Bahdanau) attention: a bidirectional GRU encoder over packed
sequences, a GRU decoder that attends over the source at every step, padding masked out.

Same interface as models.seq2seq.Seq2Seq (time-major [len, batch] ids; `loss`, `greedy`), so
the training loop, checkpoints, evaluation and serving are shared.
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class Encoder(nn.Module):
    def __init__(self, vocab: int, emb: int, enc_hid: int, dec_hid: int, dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.rnn = nn.GRU(emb, enc_hid, bidirectional=True)
        self.fc = nn.Linear(enc_hid * 2, dec_hid)
        self.dropout = nn.Dropout(dropout)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor):
        embedded = self.dropout(self.embedding(src))
        packed = pack_padded_sequence(embedded, lengths.cpu(), enforce_sorted=False)
        outputs, hidden = self.rnn(packed)
        outputs, _ = pad_packed_sequence(outputs, total_length=src.shape[0])  # [S, B, 2H]
        hidden = torch.tanh(self.fc(torch.cat((hidden[-2], hidden[-1]), dim=1)))  # [B, D]
        return outputs, hidden


class Attention(nn.Module):
    def __init__(self, enc_hid: int, dec_hid: int):
        super().__init__()
        self.attn = nn.Linear(enc_hid * 2 + dec_hid, dec_hid)
        self.v = nn.Linear(dec_hid, 1, bias=False)

    def forward(self, hidden, keys, mask):
        """hidden [B, D]; keys = the encoder outputs' share of attn, precomputed [B, S, D]."""
        energy = torch.tanh(keys + self.attn.weight[:, -hidden.shape[1] :].matmul(
            hidden.unsqueeze(2)).transpose(1, 2))  # fmt: skip
        scores = self.v(energy).squeeze(2).masked_fill(~mask, -1e10)  # [B, S]
        return F.softmax(scores, dim=1)


class Decoder(nn.Module):
    def __init__(self, vocab: int, emb: int, enc_hid: int, dec_hid: int, dropout: float):
        super().__init__()
        self.output_dim = vocab
        self.attention = Attention(enc_hid, dec_hid)
        self.embedding = nn.Embedding(vocab, emb)
        self.rnn = nn.GRU(enc_hid * 2 + emb, dec_hid)
        self.fc_out = nn.Linear(enc_hid * 2 + dec_hid + emb, vocab)
        self.dropout = nn.Dropout(dropout)

    def keys(self, enc_out: torch.Tensor) -> torch.Tensor:
        """The encoder outputs' part of the attention energy, once per batch: [B, S, D]."""
        w = self.attention.attn
        enc_part = w.weight[:, : enc_out.shape[2]]
        return (enc_out.transpose(0, 1) @ enc_part.T) + w.bias

    def step(self, token, hidden, enc_out, keys, mask):
        """Features for the output layer [B, F] and the new hidden state."""
        embedded = self.dropout(self.embedding(token))  # [B, E]
        a = self.attention(hidden, keys, mask)  # [B, S]
        weighted = torch.bmm(a.unsqueeze(1), enc_out.transpose(0, 1)).squeeze(1)  # [B, 2H]
        output, hidden = self.rnn(torch.cat((embedded, weighted), 1).unsqueeze(0),
                                  hidden.unsqueeze(0))  # fmt: skip
        hidden = hidden.squeeze(0)
        return torch.cat((output.squeeze(0), weighted, embedded), 1), hidden


class AttnSeq2Seq(nn.Module):
    def __init__(self, src_vocab, trg_vocab, emb_dim=256, hid_dim=512, dropout=0.5, pad_idx=1):
        super().__init__()
        self.pad_idx = pad_idx
        self.encoder = Encoder(src_vocab, emb_dim, hid_dim, hid_dim, dropout)
        self.decoder = Decoder(trg_vocab, emb_dim, hid_dim, hid_dim, dropout)
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.normal_(param, 0, 0.01)
            else:
                nn.init.zeros_(param)

    def _encode(self, src):
        mask = (src != self.pad_idx).T  # [B, S]
        enc_out, hidden = self.encoder(src, mask.sum(1))
        return enc_out, hidden, self.decoder.keys(enc_out), mask

    def loss(self, src, trg, pad_idx: int, teacher_forcing_ratio: float = 0.5):
        enc_out, hidden, keys, mask = self._encode(src)
        forced = torch.rand(trg.shape[0]).tolist()
        token, feats = trg[0], []
        for t in range(1, trg.shape[0]):
            feat, hidden = self.decoder.step(token, hidden, enc_out, keys, mask)
            feats.append(feat)
            if t + 1 < trg.shape[0]:
                if forced[t] < teacher_forcing_ratio:
                    token = trg[t]
                else:
                    with torch.no_grad():
                        token = self.decoder.fc_out(feat).argmax(1)
        target = trg[1:]
        keep = target != pad_idx
        logits = self.decoder.fc_out(torch.stack(feats)[keep])
        return F.cross_entropy(logits, target[keep])

    @torch.no_grad()
    def greedy(self, src, sos: int, eos: int, max_len: int = 50) -> list[list[int]]:
        enc_out, hidden, keys, mask = self._encode(src)
        token = torch.full((src.shape[1],), sos, dtype=torch.long, device=src.device)
        steps, done = [], torch.zeros(src.shape[1], dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            feat, hidden = self.decoder.step(token, hidden, enc_out, keys, mask)
            token = self.decoder.fc_out(feat).argmax(1)
            steps.append(token)
            done |= token == eos
            if bool(done.all()):
                break
        out = torch.stack(steps, 1).tolist()
        return [seq[: seq.index(eos)] if eos in seq else seq for seq in out]
