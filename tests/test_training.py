"""word2vec's recipes on small synthetic data, trained by the runtime: they learn, and the fast
paths agree in kind."""

import numpy as np
import pytest
import torch

from flows.config import load_config
from models.sgns_cpu import alias_table
from models.word2vec import Word2Vec
from tasks.train.word2vec import keep_probability, pair_probability, softmax_loss, train_word2vec


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


def test_an_empty_batch_has_zero_loss_and_zero_gradients():
    # a DDP rank's share of a last batch smaller than the number of ranks
    model = Word2Vec(30, 8)
    none = torch.zeros(0, dtype=torch.long)
    loss = softmax_loss(model, none, none)
    loss.backward()
    assert loss.item() == 0.0 and not model.expand.weight.grad.any()


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
        {"model": "sgns", "kernel": "c", "lr": 0.05, "embed_size": 16},
    ],
)
def test_each_model_and_kernel_learns_the_topics(overrides):
    pairs, counts = toy_pairs()
    cfg = load_config("word2vec", "parity").train.model_copy(update={"epochs": 4, **overrides})
    recipe, fitted = train_word2vec(pairs, counts, cfg)
    assert len(fitted.train_loss) == 4 and all(np.isfinite(fitted.train_loss))
    assert fitted.train_loss[-1] < fitted.train_loss[0]
    assert same_topic_margin(recipe.model.word_vectors().numpy()) > 0.3
    assert fitted.items == 4 * len(pairs) and fitted.per_sec > 0
    assert [set(row) for row in fitted.history] == [{"train_loss", "epoch_pairs_per_sec"}] * 4


def test_max_steps_per_epoch_cuts_epochs_short():
    pairs, counts = toy_pairs()
    cfg = load_config("word2vec", "parity").train.model_copy(
        update={"epochs": 2, "batch_size": 100, "max_steps_per_epoch": 3}
    )
    assert train_word2vec(pairs, counts, cfg)[1].items == 2 * 3 * 100
    for kernel in ("numba", "c"):
        compiled = cfg.model_copy(update={"model": "sgns", "kernel": kernel})
        assert train_word2vec(pairs, counts, compiled)[1].items == 2 * 3 * 100


def test_no_pairs_is_a_clear_error():
    cfg = load_config("word2vec", "quick").train
    with pytest.raises(ValueError, match="no training pairs"):
        train_word2vec(np.zeros((0, 2), np.int32), np.ones(5), cfg)


def test_the_compiled_loop_reads_the_kept_pairs_in_corpus_order():
    """As word2vec and gensim read a corpus: each epoch keeps its own draw of pairs, in order."""
    from tasks.train.word2vec import make_recipe

    pairs, counts = toy_pairs()
    distance = np.ones(len(pairs), dtype=np.int8)
    cfg = load_config("word2vec", "best").train.model_copy(update={"kernel": "c"})
    recipe = make_recipe(pairs, counts, cfg, distance)
    assert recipe.kernel == "c"
    (first,), (second,) = recipe.batches(0), recipe.batches(1)
    assert (np.diff(first) > 0).all() and (np.diff(second) > 0).all()  # ascending, no repeats
    assert not np.array_equal(first, second)  # subsampling drawn afresh each epoch


def test_alias_table_reproduces_the_noise_distribution_exactly():
    probs = np.array([5.0, 1.0, 0.0, 3.0, 0.5, 7.25]) ** 0.75
    accept, alias = alias_table(probs)
    n = len(probs)
    implied = accept.astype(np.float64) / n
    np.add.at(implied, alias, (1 - accept.astype(np.float64)) / n)
    np.testing.assert_allclose(implied, probs / probs.sum(), atol=1e-7)


def test_pair_probability_subsampling_and_dynamic_window():
    pairs = np.array([[0, 1], [1, 0], [0, 2], [2, 2]], dtype=np.int32)
    counts = np.array([100_000, 10, 10])
    distance = np.array([1, 2, 3, 1], dtype=np.int8)
    cfg = load_config("word2vec", "best").train
    p = pair_probability(pairs, counts, cfg, distance)
    keep = keep_probability(counts, cfg.subsample)
    assert keep[0] < 1 and keep[1] == keep[2] == 1
    assert p.dtype == np.float32  # as the draws it is compared with
    np.testing.assert_allclose(p, [keep[0], keep[0] * 2 / 3, keep[0] / 3, 1.0], rtol=1e-6)
    plain = cfg.model_copy(update={"subsample": 0.0, "dynamic_window": False})
    assert pair_probability(pairs, counts, plain, None) is None
    with pytest.raises(ValueError, match="distance"):
        pair_probability(pairs, counts, cfg, None)


def test_best_profile_trains_on_fewer_pairs_with_the_same_signal():
    pairs, counts = toy_pairs()
    distance = np.ones(len(pairs), dtype=np.int8) + (np.arange(len(pairs)) % 3).astype(np.int8)
    cfg = load_config("word2vec", "best").train.model_copy(
        update={"epochs": 4, "lr": 0.05, "embed_size": 16, "subsample": 0.0}
    )
    recipe, fitted = train_word2vec(pairs, counts, cfg, distance=distance)
    assert 0.55 * 4 * len(pairs) < fitted.items < 0.8 * 4 * len(pairs)  # E = 2/3
    assert same_topic_margin(recipe.model.word_vectors().numpy()) > 0.3


def test_warm_start_keeps_known_tokens_and_starts_new_ones_fresh():
    from models.word2vec import Word2Vec
    from tasks.train.word2vec import warm_start

    old = Word2Vec(3, 4)
    new = Word2Vec(4, 4)
    fresh = {k: v.clone() for k, v in new.state_dict().items()}
    carried = warm_start(new, old, ["a", "b", "c"], ["c", "x", "a", "y"])
    assert carried == 2
    for name in ("embed.weight", "expand.weight"):
        got, src = new.state_dict()[name], old.state_dict()[name]
        assert torch.equal(got[0], src[2]) and torch.equal(got[2], src[0])
        assert torch.equal(got[1], fresh[name][1]) and torch.equal(got[3], fresh[name][3])
    assert warm_start(Word2Vec(4, 8), old, ["a", "b", "c"], ["c", "x", "a", "y"]) == 0


def test_the_c_and_numba_loops_compute_the_same_updates():
    """One thread each, the same pairs, noise draws and schedule: the same weights (to float
    rounding: each compiler orders the dot products' sums its own way)."""
    import numba

    from models.sgns_cpu import sgns_epoch

    pairs, counts = toy_pairs(n=2000)
    rng = np.random.default_rng(0)
    start = (rng.normal(size=(len(counts), 16)) * 0.1).astype(np.float32)
    noise = alias_table(counts.astype(np.float64) ** 0.75)
    centers, contexts = np.ascontiguousarray(pairs.T, dtype=np.int32)
    order = np.arange(len(pairs))
    out = {}
    threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1), numba.set_num_threads(1)
    try:
        for kernel in ("c", "numba"):
            win, wout = start.copy(), start[::-1].copy()
            loss = sgns_epoch(win, wout, centers, contexts, order, noise, 5, 0.05, 0,
                              len(pairs), 3, kernel)  # fmt: skip
            out[kernel] = (win, wout, loss)
    finally:
        torch.set_num_threads(threads[0]), numba.set_num_threads(threads[1])
    for a, b in zip(out["c"][:2], out["numba"][:2], strict=True):
        assert not np.array_equal(a, start)  # trained
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert out["c"][2] == pytest.approx(out["numba"][2], rel=1e-4)
