"""Word2Vec models: the notebook's full-softmax network and skip-gram with negative sampling."""

import torch
from torch import nn


class Word2Vec(nn.Module):
    """The notebook's model: Embedding V×E, then Linear E×V without bias (logits over V)."""

    def __init__(self, vocab_size: int, embedding_size: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding_size)
        self.expand = nn.Linear(embedding_size, vocab_size, bias=False)

    def forward(self, input_: torch.Tensor) -> torch.Tensor:
        # input_ = [batch] token ids
        hidden = self.embed(input_)  # [batch, E]
        return self.expand(hidden)  # [batch, V]

    def word_vectors(self) -> torch.Tensor:
        """The vectors the notebook compares: rows of expand.weight, [V, E]."""
        return self.expand.weight.detach()


class SkipGramNS(nn.Module):
    """Skip-gram with negative sampling (Mikolov et al. 2013), sparse embedding updates."""

    def __init__(self, vocab_size: int, embedding_size: int):
        super().__init__()
        self.inp = nn.Embedding(vocab_size, embedding_size, sparse=True)
        self.out = nn.Embedding(vocab_size, embedding_size, sparse=True)
        bound = 0.5 / embedding_size
        nn.init.uniform_(self.inp.weight, -bound, bound)
        nn.init.zeros_(self.out.weight)

    def forward(self, input_: torch.Tensor) -> torch.Tensor:
        # input_ = [batch] token ids -> their vectors [batch, E]
        return self.inp(input_)

    def score(self, center: torch.Tensor, context: torch.Tensor, negatives: torch.Tensor):
        # center = [batch], context = [batch], negatives = [batch, k]
        v = self.inp(center)  # [batch, E]
        pos = (v * self.out(context)).sum(-1)  # [batch]
        neg = torch.bmm(self.out(negatives), v.unsqueeze(-1)).squeeze(-1)  # [batch, k]
        return pos, neg

    @staticmethod
    def loss(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        # -log σ(pos) - Σ log σ(-neg), averaged over the batch
        return -(nn.functional.logsigmoid(pos) + nn.functional.logsigmoid(-neg).sum(-1)).mean()

    def word_vectors(self) -> torch.Tensor:
        return self.inp.weight.detach()
