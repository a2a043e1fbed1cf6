"""Laboratorio 3 NumPy RNN / LSTM: the notebook's graded values, gradients, training.

The notebook grades with jhwutils.checkarr; ``array_hash``, ``check_hash``,
``check_scalar`` and ``check_string`` below compute the same values as that module
(johnhw/jhwutils, jhwutils/checkarr.py). The tolerances here are much tighter than
check_hash's (rtol 1e-5): only last-bit BLAS/LAPACK differences are allowed.
"""

from binascii import crc32

import numpy as np
import pytest
import torch

from models import numpy_lstm as lstm
from models import numpy_rnn as rnn
from tasks import toy
from tasks.runtime.loop import Plan
from tasks.runtime.trainer import fit
from tasks.train.fundamentals import NumpyRecipe

SEED = 2023
HIDDEN = 50


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- jhwutils.checkarr, reimplemented ---------------------------------------------------


def array_hash(arr):
    """(shape, sum of max, min, mean, median, std, sum, index-weighted sum)."""
    arr = np.array(arr)
    flat = arr.ravel()
    stats = (
        np.nanmax(flat),
        np.nanmin(flat),
        np.nanmean(flat),
        np.nanmedian(flat),
        np.nanstd(flat),
        np.nansum(flat),
        np.nansum(flat * np.arange(len(flat))),
    )
    return arr.shape, np.nansum(stats)


def assert_hash(arr, expected):
    shape, value = array_hash(arr)
    assert shape == expected[0]
    assert value == pytest.approx(expected[1], rel=1e-10, abs=1e-12)


def _scalar_crc(x, tol=5):
    return hex(crc32(f"{x:1.{tol}e}".encode("ascii")))


def check_scalar(x, h, tol=5):
    """crc32 of f"{x:1.5e}", also accepted for x shifted by +-x * 1e-6."""
    offset = 10 ** (-tol) * x * 0.1
    return h in {_scalar_crc(x, tol), _scalar_crc(x + offset, tol), _scalar_crc(x - offset, tol)}


def check_string(s, h):
    return hex(crc32(s.lower().encode("utf8"))) == h


# -- the notebook's cells, replayed in order ---------------------------------------------


@pytest.fixture(scope="module")
def nb():
    """State of the notebook after its cells, with its exact np.random consumption."""
    saved = np.random.get_state()
    try:
        np.random.seed(SEED)  # cell 50: reseed, then generate
        sequences = toy.generate_data()
        word_to_idx, idx_to_word, num_sequences, vocab_size = toy.seqs_to_dicts(sequences)
        training_set, validation_set, test_set = toy.create_datasets(sequences)
        np.random.seed(SEED)  # cell 55: graded RNN init
        rnn_params = rnn.init_rnn(HIDDEN, vocab_size)
        rnn_train_params = rnn.init_rnn(HIDDEN, vocab_size)  # cell 64: no reseed
        np.random.seed(SEED)  # cell 66: graded LSTM init
        lstm_params = lstm.init_lstm(HIDDEN, vocab_size, HIDDEN + vocab_size)
        lstm_train_params = lstm.init_lstm(HIDDEN, vocab_size, HIDDEN + vocab_size)  # cell 72
    finally:
        np.random.set_state(saved)
    return dict(
        sequences=sequences,
        word_to_idx=word_to_idx,
        idx_to_word=idx_to_word,
        num_sequences=num_sequences,
        vocab_size=vocab_size,
        training_set=training_set,
        validation_set=validation_set,
        test_set=test_set,
        rnn_params=rnn_params,
        rnn_train_params=rnn_train_params,
        lstm_params=lstm_params,
        lstm_train_params=lstm_train_params,
    )


def encode(nb, pair):
    x, y = pair
    return (
        toy.one_hot_encode_sequence(x, nb["vocab_size"], nb["word_to_idx"]),
        toy.one_hot_encode_sequence(y, nb["vocab_size"], nb["word_to_idx"]),
    )


def copy_params(params):
    return tuple(p.copy() for p in params)


def train_cell(kind, params, train, val, epochs, lr):
    """The notebook's training cell (it defines no function for it): the NumPy recipe run by
    the training runtime. Returns the per-epoch (training_loss, validation_loss)."""
    _, fitted = fit(NumpyRecipe(kind, params, train, val, lr), Plan(epochs, progress=False))
    return fitted.train_loss, fitted.series("val_loss")


# -- toy data ----------------------------------------------------------------------------


def test_toy_data(nb):
    sequences = nb["sequences"]
    assert len(sequences) == nb["num_sequences"] == 100
    assert sequences[0] == ["a"] * 8 + ["b"] * 8 + ["EOS"]  # printed by the notebook
    assert all(s == ["a"] * n + ["b"] * n + ["EOS"] for s in sequences for n in [len(s) // 2])
    w2i, i2w = nb["word_to_idx"], nb["idx_to_word"]
    assert dict(w2i) == {"a": 0, "b": 1, "EOS": 2, "UNK": 3}
    assert dict(i2w) == {0: "a", 1: "b", 2: "EOS", 3: "UNK"}
    assert nb["vocab_size"] == 4
    assert w2i["zzz"] == 3 and i2w[99] == "UNK" and len(w2i) == 4  # misses do not insert
    assert check_scalar(len(w2i), "0xc51b9ba8")
    assert check_scalar(len(i2w), "0xc51b9ba8")
    assert check_string(i2w[0], "0xe8b7be43")

    train, val, test = nb["training_set"], nb["validation_set"], nb["test_set"]
    assert (len(train), len(val), len(test)) == (80, 10, 10)
    parts = [train, val, test]
    for part, seqs in zip(parts, [sequences[:80], sequences[80:90], sequences[90:]], strict=True):
        assert [part[k] for k in range(len(part))] == [(s[:-1], s[1:]) for s in seqs]
    assert len(train[0][0]) == 16 and len(test[1][0]) == 22


def test_generator_rng_matches_global_stream(nb):
    assert toy.generate_data(rng=np.random.RandomState(SEED)) == nb["sequences"]
    params = rnn.init_rnn(HIDDEN, 4, rng=np.random.RandomState(SEED))
    for a, b in zip(params, nb["rnn_params"], strict=True):
        np.testing.assert_array_equal(a, b)


def test_one_hot(nb):
    w2i = nb["word_to_idx"]
    encoded = toy.one_hot_encode_sequence(["a", "b", "oov"], 4, w2i)
    assert encoded.shape == (3, 4, 1)
    np.testing.assert_array_equal(encoded[:, :, 0], [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]])


# -- graded values: RNN ------------------------------------------------------------------


def test_rnn_graded_values(nb):
    params = nb["rnn_params"]
    assert_hash(params[0], ((50, 4), 80.24369675632171))
    assert_hash(params[1], ((50, 50), 3333.838548574836))
    assert_hash(params[2], ((4, 50), -80.6410290517092))
    assert_hash(params[3], ((50, 1), 0.0))
    assert_hash(params[4], ((4, 1), 0.0))

    assert_hash(rnn.sigmoid(params[0][0]), ((4,), 6.997641543410888))
    assert_hash(rnn.tanh(params[0][0]), ((4,), -0.007401604025076086))
    assert_hash(rnn.softmax(params[0][0]), ((4,), 3.504688021096135))

    x, y = encode(nb, nb["training_set"][0])
    outputs, hidden_states = rnn.forward_pass(x, np.zeros((HIDDEN, 1)), params)
    assert_hash(outputs, ((16, 4, 1), 519.7419046193046))

    loss, grads = rnn.backward_pass(x, outputs, hidden_states, y, params)
    assert check_scalar(loss, "0xf0c8ccc9")
    assert loss == pytest.approx(5.481882193352572, rel=1e-12)  # not printed: this code's value
    assert_hash(grads[0], ((50, 4), -16.16536590645467))
    assert_hash(grads[1], ((50, 50), -155.12594909703253))
    assert_hash(grads[2], ((4, 50), 1.5957812992239038))


def test_rnn_training_reproduces_notebook(nb):
    """Printed losses of the training cell at epochs 0 and 100 (SGD lr 3e-4)."""
    train = toy.encode_pairs(nb["training_set"], 4, nb["word_to_idx"])
    val = toy.encode_pairs(nb["validation_set"], 4, nb["word_to_idx"])
    params = copy_params(nb["rnn_train_params"])
    train_loss, val_loss = train_cell("numpy_rnn", params, train, val, epochs=101, lr=3e-4)
    assert train_loss[0] == pytest.approx(4.05046509496538, rel=1e-10)
    assert val_loss[0] == pytest.approx(4.801971835967155, rel=1e-10)
    assert train_loss[100] == pytest.approx(2.729834076574944, rel=1e-8)
    assert val_loss[100] == pytest.approx(3.2320576163982677, rel=1e-8)
    assert train_loss[20] < train_loss[0] and val_loss[20] < val_loss[0]
    assert np.all(np.diff(train_loss) < 0)


# -- graded values: LSTM -----------------------------------------------------------------


def test_lstm_graded_values(nb):
    params = nb["lstm_params"]
    assert_hash(params[0], ((50, 54), -28071.583543573637))
    assert_hash(params[1], ((50, 54), -6337.520066952928))
    assert_hash(params[2], ((50, 54), -13445.986473992281))
    assert_hash(params[3], ((50, 54), 2276.1116210911564))
    assert_hash(params[4], ((4, 50), -201.28961326044097))
    for b, n in zip(params[5:], [50, 50, 50, 50, 4], strict=True):
        np.testing.assert_array_equal(b, np.zeros((n, 1)))

    x, y = encode(nb, nb["test_set"][1])
    zeros = np.zeros((HIDDEN, 1))
    states = lstm.forward(x, zeros, zeros, params)
    assert_hash(states[-1], ((22, 4, 1), 980.1651308051631))

    loss, _ = lstm.backward(*states, y, params)
    assert check_scalar(loss, "0x53c34f25")
    assert loss == pytest.approx(7.637217940763248, rel=1e-12)  # printed by the notebook


def test_lstm_training_reproduces_notebook(nb):
    """Printed losses of the LSTM training cell at epochs 0 and 10 (SGD lr 0.1)."""
    train = toy.encode_pairs(nb["training_set"], 4, nb["word_to_idx"])
    val = toy.encode_pairs(nb["validation_set"], 4, nb["word_to_idx"])
    params = copy_params(nb["lstm_train_params"])
    train_loss, val_loss = train_cell("numpy_lstm", params, train, val, epochs=11, lr=1e-1)
    assert train_loss[0] == pytest.approx(2.9228179938116403, rel=1e-10)
    assert val_loss[0] == pytest.approx(4.499707061171418, rel=1e-10)
    assert train_loss[10] == pytest.approx(1.052324570568169, rel=1e-8)
    assert val_loss[10] == pytest.approx(1.25389816001126, rel=1e-8)
    assert train_loss[10] < train_loss[0] and val_loss[10] < val_loss[0]


# -- gradients against autograd and finite differences -----------------------------------


def random_params(params, seed=0):
    """The notebook's weights with small random biases, so every term is exercised."""
    rng = np.random.RandomState(seed)
    return tuple(p + 0.1 * rng.randn(*p.shape) if p.shape[1] == 1 else p.copy() for p in params)


def summed_ce(outputs, targets):
    return sum(-np.sum(y * np.log(p)) for p, y in zip(outputs, targets, strict=True))


def torch_grads(loss_fn, params):
    tensors = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]
    loss_fn(*tensors).backward()
    return [t.grad.numpy() for t in tensors]


def rel_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def rnn_torch_loss(x, y):
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def loss_fn(U, V, W, b_hidden, b_out):
        h = torch.zeros(U.shape[0], 1, dtype=torch.float64)
        loss = 0
        for t in range(len(x)):
            h = torch.tanh(U @ x[t] + V @ h + b_hidden)
            loss = loss - (y[t] * torch.log_softmax(W @ h + b_out, dim=0)).sum()
        return loss

    return loss_fn


def lstm_torch_loss(x, y):
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def loss_fn(W_f, W_i, W_g, W_o, W_v, b_f, b_i, b_g, b_o, b_v):
        h = torch.zeros(W_f.shape[0], 1, dtype=torch.float64)
        c = torch.zeros_like(h)
        loss = 0
        for t in range(len(x)):
            z = torch.cat([h, x[t]])
            f = torch.sigmoid(W_f @ z + b_f)
            i = torch.sigmoid(W_i @ z + b_i)
            g = torch.tanh(W_g @ z + b_g)
            c = f * c + i * g
            h = torch.sigmoid(W_o @ z + b_o) * torch.tanh(c)
            loss = loss - (y[t] * torch.log_softmax(W_v @ h + b_v, dim=0)).sum()
        return loss

    return loss_fn


def rnn_grads(params, x, y, **kwargs):
    outputs, hidden_states = rnn.forward_pass(x, np.zeros((HIDDEN, 1)), params)
    return rnn.backward_pass(x, outputs, hidden_states, y, params, **kwargs)


def lstm_grads(params, x, y, **kwargs):
    zeros = np.zeros((HIDDEN, 1))
    return lstm.backward(*lstm.forward(x, zeros, zeros, params), y, params, **kwargs)


def rnn_loss(params, x, y):
    return summed_ce(rnn.forward_pass(x, np.zeros((HIDDEN, 1)), params)[0], y)


def lstm_loss(params, x, y):
    zeros = np.zeros((HIDDEN, 1))
    return summed_ce(lstm.forward(x, zeros, zeros, params)[-1], y)


CASES = {
    "rnn": ("rnn_params", rnn_grads, rnn_loss, rnn_torch_loss),
    "lstm": ("lstm_params", lstm_grads, lstm_loss, lstm_torch_loss),
}


@pytest.mark.parametrize("model", CASES)
def test_gradients_match_autograd(nb, model):
    key, grads_fn, _, torch_loss = CASES[model]
    params = random_params(nb[key])
    x, y = encode(nb, nb["training_set"][3])
    _, grads = grads_fn(params, x, y, clip=False, notebook=False)
    expected = torch_grads(torch_loss(x, y), params)
    for k, (ours, ref) in enumerate(zip(grads, expected, strict=True)):
        assert ours.shape == ref.shape
        assert rel_error(ours, ref) < 1e-6, (model, k, rel_error(ours, ref))


@pytest.mark.parametrize("model", CASES)
def test_gradients_match_finite_differences(nb, model):
    key, grads_fn, loss_fn, _ = CASES[model]
    params = random_params(nb[key])
    x, y = encode(nb, nb["training_set"][5])
    _, grads = grads_fn(params, x, y, clip=False, notebook=False)
    rng, eps = np.random.RandomState(1), 1e-5
    for param, grad in zip(params, grads, strict=True):
        for _ in range(3):
            idx = tuple(rng.randint(n) for n in param.shape)
            old = param[idx]
            param[idx] = old + eps
            up = loss_fn(params, x, y)
            param[idx] = old - eps
            down = loss_fn(params, x, y)
            param[idx] = old
            numeric = (up - down) / (2 * eps)
            assert numeric == pytest.approx(grad[idx], rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("model", CASES)
def test_notebook_mode_and_clipping(nb, model):
    """The quirks leave the output-layer gradients alone; clipping rescales to norm 0.25."""
    key, grads_fn, _, _ = CASES[model]
    params = nb[key]
    x, y = encode(nb, nb["training_set"][0])
    loss, exact = grads_fn(params, x, y, clip=False, notebook=False)
    loss_nb, raw = grads_fn(params, x, y, clip=False)
    assert loss_nb == loss
    out = (2, 4) if model == "rnn" else (4, 9)  # (W, b_out) / (W_v, b_v)
    for k in out:
        np.testing.assert_array_equal(raw[k], exact[k])
    assert max(rel_error(a, b) for a, b in zip(raw, exact, strict=True)) > 1e-3
    norm = np.sqrt(sum(np.sum(g**2) for g in raw))
    assert norm > 0.25
    _, clipped = grads_fn(params, x, y)
    for c, r in zip(clipped, raw, strict=True):
        np.testing.assert_allclose(c, r * 0.25 / (norm + 1e-6), rtol=1e-12)
