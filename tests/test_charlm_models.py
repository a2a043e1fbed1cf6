"""The character-level language models: scratch cells against their per-step reference and
against torch.nn, the CharLM kinds' shapes and layouts, and that each kind can learn."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import recurrence
from models.charlm import (
    KINDS,
    CharLM,
    GRUScratch,
    LSTMScratch,
    RNNScratch,
    load_torch_weights,
    step_reference,
)

CELLS = [RNNScratch, LSTMScratch, GRUScratch]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cell(cls, n_in, n_hid, reset_after=False):
    cell = cls(n_in, n_hid, reset_after=reset_after) if cls is GRUScratch else cls(n_in, n_hid)
    with torch.no_grad():  # larger than the notebook's 0.01 so the gates are not all ~0.5
        for p in cell.parameters():
            p.normal_(0.0, 0.5)
    return cell.double()


def _random_state(cls, batch, n_hid, gen):
    h = torch.randn(batch, n_hid, generator=gen, dtype=torch.float64)
    if cls is LSTMScratch:
        return h, torch.randn(batch, n_hid, generator=gen, dtype=torch.float64)
    return h


def _flat(state):
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize(
    ("cls", "reset_after"),
    [(RNNScratch, False), (LSTMScratch, False), (GRUScratch, False), (GRUScratch, True)],
)
def test_fused_forward_matches_step_reference(cls, reset_after):
    gen = torch.Generator().manual_seed(0)
    cell = _cell(cls, 5, 7, reset_after)
    for batch, length in [(1, 1), (3, 6), (8, 17), (2, 0)]:
        x = torch.randn(batch, length, 5, generator=gen, dtype=torch.float64)
        for state in (None, _random_state(cls, batch, 7, gen)):
            out, final = cell(x, state)
            ref_out, ref_final = step_reference(cell, x, state)
            assert out.shape == (batch, length, 7)
            torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=0)
            for a, b in zip(_flat(final), _flat(ref_final), strict=True):
                torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
            if length:
                h = final[0] if cls is LSTMScratch else final
                torch.testing.assert_close(out[:, -1], h, atol=0, rtol=0)


def test_fused_forward_float32_and_gradients_match_reference():
    gen = torch.Generator().manual_seed(1)
    for cls in CELLS:
        cell = cls(6, 8)
        x = torch.randn(4, 9, 6, generator=gen)
        out, _ = cell(x)
        torch.testing.assert_close(out, step_reference(cell, x)[0], atol=1e-6, rtol=0)
        g_fast = torch.autograd.grad(out.square().sum(), list(cell.parameters()))
        ref = step_reference(cell, x)[0]
        g_ref = torch.autograd.grad(ref.square().sum(), list(cell.parameters()))
        for a, b in zip(g_fast, g_ref, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cls", CELLS)
def test_hand_written_backward_matches_autograd_of_reference(cls):
    """models/recurrence.py's BPTT against autograd through the notebook's formulation:
    gradients of the weights, the inputs and the initial state, with the loss reading both
    the outputs and the final state, in float64."""
    gen = torch.Generator().manual_seed(2)
    cell = _cell(cls, 5, 6, False)
    x = torch.randn(3, 11, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    state = tuple(s.requires_grad_() for s in _flat(_random_state(cls, 3, 6, gen)))
    weights = torch.randn(3, 11, 6, generator=gen, dtype=torch.float64)
    leaves = [*cell.parameters(), x, *state]
    grads = []
    for fn in (cell, lambda x, s: step_reference(cell, x, s)):
        out, final = fn(x, state if cls is LSTMScratch else state[0])
        loss = (out * weights).sum() + sum(f.square().sum() for f in _flat(final))
        grads.append(torch.autograd.grad(loss, leaves))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-6)


@pytest.mark.parametrize("fn", [recurrence.rnn, recurrence.lstm, recurrence.gru])
def test_recurrence_gradcheck(fn):
    """Finite differences agree with the hand-written backward (torch.autograd.gradcheck)."""
    gates = {recurrence.rnn: 1, recurrence.lstm: 4, recurrence.gru: 3}[fn]
    gen = torch.Generator().manual_seed(3)

    def leaf(*shape):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * 0.7).requires_grad_()

    # x [B=3, T=4, I=2], W_x, b, W_h, h0 (, c0)
    inputs = [leaf(3, 4, 2), leaf(2, gates * 5), leaf(gates * 5), leaf(5, gates * 5), leaf(3, 5)]
    if fn is recurrence.lstm:
        inputs.append(leaf(3, 5))

    def flat_outputs(*args):
        hs, last = fn(*args)
        return (hs, *_flat(last))

    assert torch.autograd.gradcheck(flat_outputs, inputs)


def test_gate_blocks_are_the_notebook_layout():
    cell = LSTMScratch(3, 4)
    W_xo, W_ho, b_o = cell.gate("o")
    assert W_xo.shape == (3, 4) and W_ho.shape == (4, 4) and b_o.shape == (4,)
    assert W_xo.data_ptr() == cell.W_x[:, 8:12].data_ptr()  # i, f, o, c
    assert GRUScratch.gate_names == ("z", "r", "h")
    # the notebook's initialisation: small weights, zero biases
    assert cell.W_x.std() < 0.05 and not cell.b.any()


@pytest.mark.parametrize(
    ("cls", "torch_cls"), [(RNNScratch, nn.RNN), (LSTMScratch, nn.LSTM), (GRUScratch, nn.GRU)]
)
def test_scratch_cells_equal_torch_with_copied_weights(cls, torch_cls):
    torch.manual_seed(2)
    n_in, n_hid = 5, 6
    ref = torch_cls(n_in, n_hid, batch_first=True).double()
    with torch.no_grad():  # distinct, non-trivial biases so a mis-mapped block shows
        for p in ref.parameters():
            p.uniform_(-0.8, 0.8)
    cell = cls(n_in, n_hid, reset_after=True) if cls is GRUScratch else cls(n_in, n_hid)
    load_torch_weights(cell.double(), ref)
    gen = torch.Generator().manual_seed(3)
    for batch, length in [(1, 4), (5, 11)]:
        x = torch.randn(batch, length, n_in, generator=gen, dtype=torch.float64)
        state = _random_state(cls, batch, n_hid, gen)
        torch_state = (
            tuple(s.unsqueeze(0) for s in state) if cls is LSTMScratch else state.unsqueeze(0)
        )
        for s, ts in ((None, None), (state, torch_state)):
            out, final = cell(x, s)
            ref_out, ref_final = ref(x, ts)
            torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=0)
            for a, b in zip(_flat(final), _flat(ref_final), strict=True):
                torch.testing.assert_close(a, b.squeeze(0), atol=1e-5, rtol=0)
            ref_step, _ = step_reference(cell, x, s)
            torch.testing.assert_close(ref_step, ref_out, atol=1e-5, rtol=0)


def test_notebook_gru_is_not_torch_gru():
    torch.manual_seed(4)
    ref = nn.GRU(3, 4, batch_first=True).double()
    fast = load_torch_weights(GRUScratch(3, 4, reset_after=True).double(), ref)
    notebook = GRUScratch(3, 4).double()
    with torch.no_grad():
        for name in ("W_x", "W_h", "b"):
            getattr(notebook, name).copy_(getattr(fast, name))
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    assert not torch.allclose(notebook(x)[0], ref(x)[0], atol=1e-5)
    with pytest.raises(ValueError, match="reset_after"):
        load_torch_weights(GRUScratch(3, 4), ref)


def test_kinds_constant():
    assert KINDS == (
        "rnn_scratch",
        "lstm_scratch",
        "gru_scratch",
        "rnn",
        "lstm",
        "gru",
        "lstm_deep",
        "lstm_bidir",
    )


@pytest.mark.parametrize("kind", KINDS)
def test_logits_shape_and_sees_future(kind):
    torch.manual_seed(5)
    model = CharLM(11, kind, hidden=8)
    ids = torch.randint(0, 11, (3, 7))
    logits = model(ids)
    assert logits.shape == (3, 7, 11)
    assert logits.dtype == torch.float32
    assert model.sees_future is (kind == "lstm_bidir")


def test_default_hidden_and_layers():
    model = CharLM(34, "lstm")
    assert model.hidden == 32 and model.rnn.hidden_size == 32
    assert model.rnn.input_size == 34  # one-hot input, no embedding
    assert not any(isinstance(m, nn.Embedding) for m in model.modules())
    assert CharLM(34, "lstm_deep").rnn.num_layers == 2
    bidir = CharLM(34, "lstm_bidir")
    assert bidir.rnn.bidirectional and bidir.output.in_features == 64
    assert CharLM(34, "lstm_bidir", n_layers=1).rnn.num_layers == 1
    assert len(CharLM(34, "gru_scratch", n_layers=2).cells) == 2
    with pytest.raises(ValueError):
        CharLM(34, "lstm_deep", n_layers=1)
    with pytest.raises(ValueError):
        CharLM(34, "transformer")


def test_lstm_deep_uses_its_second_layer():
    torch.manual_seed(6)
    model = CharLM(9, "lstm_deep", hidden=8).eval()
    assert model.rnn.num_layers == 2
    ids = torch.randint(0, 9, (2, 6))
    before = model(ids)
    with torch.no_grad():
        model.rnn.weight_ih_l1.add_(0.5)
    after_ih = model(ids)
    assert not torch.allclose(before, after_ih)
    with torch.no_grad():
        model.rnn.weight_hh_l1.add_(0.5)
    assert not torch.allclose(after_ih, model(ids))


def test_scratch_stack_uses_every_layer():
    torch.manual_seed(7)
    model = CharLM(9, "lstm_scratch", hidden=8, n_layers=2).eval()
    ids = torch.randint(0, 9, (2, 6))
    before = model(ids)
    with torch.no_grad():
        model.cells[1].W_x.add_(0.5)
    assert not torch.allclose(before, model(ids))


def test_lstm_bidir_reads_the_future_and_the_others_do_not():
    torch.manual_seed(8)
    ids = torch.randint(0, 9, (2, 6))
    changed = ids.clone()
    changed[:, -1] = (ids[:, -1] + 1) % 9
    for kind in KINDS:
        model = CharLM(9, kind, hidden=8).eval()
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.5)
            a, b = model(ids), model(changed)
        early_differs = not torch.allclose(a[:, :-1], b[:, :-1])
        assert early_differs is model.sees_future, kind


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "lstm_bidir"])
def test_carried_state_continues_the_text(kind):
    torch.manual_seed(9)
    model = CharLM(9, kind, hidden=8, n_layers=2 if kind != "lstm_scratch" else 1).eval()
    ids = torch.randint(0, 9, (2, 10))
    with torch.no_grad():
        whole = model(ids)
        first, state = model.run(ids[:, :4])
        rest, _ = model.run(ids[:, 4:], state)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_adam_steps_lower_the_loss(kind):
    torch.manual_seed(10)
    text = "abcab " * 8
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text])
    windows = torch.stack([ids[i : i + 9] for i in range(0, len(ids) - 9, 2)])  # 8 + 1 chars
    model = CharLM(len(vocab), kind, hidden=12, dropout=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)

    def loss():
        logits = model(windows[:, :-1])
        return F.cross_entropy(logits.reshape(-1, len(vocab)), windows[:, 1:].reshape(-1))

    model.eval()
    with torch.no_grad():
        start = loss().item()
    model.train()
    for _ in range(25):
        opt.zero_grad()
        loss().backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        end = loss().item()
    assert end < 0.5 * start, (kind, start, end)


def test_weight_drop_masks_recurrent_weights_only_while_training():
    torch.manual_seed(7)
    plain = CharLM(11, "lstm", hidden=16, n_layers=2)
    dropped = CharLM(11, "lstm", hidden=16, n_layers=2, weight_drop=0.5)
    dropped.load_state_dict(plain.state_dict())  # same names: a checkpoint loads either way
    ids = torch.randint(0, 11, (4, 9))
    plain.eval(), dropped.eval()
    assert torch.equal(plain(ids), dropped(ids))  # evaluation uses the full weights
    dropped.train()
    a, b = dropped(ids), dropped(ids)
    assert not torch.allclose(a, b)  # a fresh mask per call
    a.sum().backward()
    w = dropped.rnn.weight_hh_l1
    assert w.grad is not None and (w.grad == 0).any() and w.grad.abs().sum() > 0
    assert dropped.rnn.weight_ih_l0.grad is not None
    with pytest.raises(ValueError, match="weight_drop"):
        CharLM(11, "lstm_scratch", weight_drop=0.2)
