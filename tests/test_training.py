"""Training loops on small synthetic data: they learn, and the fast paths agree in kind."""

import numpy as np
import pytest
import torch

from flows.config import load_config
from models.word2vec import Word2Vec
from tasks.training import softmax_loss, train_word2vec


def toy_pairs(seed=0, n=20000):
    """Two topics of 10 words each; pairs only ever join words of the same topic."""
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, 2, n)
    centers = topic * 10 + rng.integers(0, 10, n)
    contexts = topic * 10 + rng.integers(0, 10, n)
    return np.stack([centers, contexts], 1).astype(np.int32), np.full(20, n // 10)


def test_grouped_softmax_loss_equals_per_pair_cross_entropy():
    torch.manual_seed(0)
    model = Word2Vec(30, 8)
    center = torch.randint(0, 30, (500,))
    context = torch.randint(0, 30, (500,))
    grouped = softmax_loss(model, center, context)
    grouped.backward()
    g1 = model.expand.weight.grad.clone()
    model.zero_grad()
    plain = torch.nn.functional.cross_entropy(model(context), center)
    plain.backward()
    assert torch.allclose(grouped, plain, atol=1e-5)
    assert torch.allclose(g1, model.expand.weight.grad, atol=1e-6)


def same_topic_margin(vectors: np.ndarray) -> float:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sim = unit @ unit.T
    same = np.kron(np.eye(2), np.ones((10, 10))).astype(bool)
    np.fill_diagonal(same, False)
    other = ~np.kron(np.eye(2), np.ones((10, 10))).astype(bool)
    return float(sim[same].mean() - sim[other].mean())


@pytest.mark.parametrize(
    "overrides",
    [
        {"model": "softmax", "batch_size": 512, "lr": 0.05},
        {"model": "sgns", "kernel": "torch", "batch_size": 512, "lr": 0.05, "embed_size": 16},
        {"model": "sgns", "kernel": "numba", "lr": 0.05, "embed_size": 16},
    ],
)
def test_each_model_and_kernel_learns_the_topics(overrides):
    pairs, counts = toy_pairs()
    cfg = load_config("word2vec", "parity").train.model_copy(update={"epochs": 4, **overrides})
    result = train_word2vec(pairs, counts, cfg)
    assert len(result.epoch_loss) == 4 and all(np.isfinite(result.epoch_loss))
    assert result.epoch_loss[-1] < result.epoch_loss[0]
    assert same_topic_margin(result.model.word_vectors().numpy()) > 0.3
    assert result.pairs_seen == 4 * len(pairs) and result.pairs_per_sec > 0


def test_max_steps_per_epoch_cuts_epochs_short():
    pairs, counts = toy_pairs()
    cfg = load_config("word2vec", "parity").train.model_copy(
        update={"epochs": 2, "batch_size": 100, "max_steps_per_epoch": 3}
    )
    assert train_word2vec(pairs, counts, cfg).pairs_seen == 2 * 3 * 100
    numba_cfg = cfg.model_copy(update={"model": "sgns", "kernel": "numba"})
    assert train_word2vec(pairs, counts, numba_cfg).pairs_seen == 2 * 3 * 100


def test_no_pairs_is_a_clear_error():
    cfg = load_config("word2vec", "quick").train
    with pytest.raises(ValueError, match="no training pairs"):
        train_word2vec(np.zeros((0, 2), np.int32), np.ones(5), cfg)
