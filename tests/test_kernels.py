"""The compiled recurrence kernels (models/cells.c via models/kernels.py): they build here, they
compute the notebook's equations (the per-step reference, within 1e-6) and the same gradients
as the torch formulation, on one thread and split over several, and without a compiler the
cells fall back to the torch formulation with a warning."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from models import kernels, recurrence
from models.charlm import CharLM, GRUScratch, LSTMScratch, RNNScratch, step_reference

CELLS = [RNNScratch, LSTMScratch, GRUScratch]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def torch_path(monkeypatch):
    """Run a callable with the kernels switched off (the torch formulation)."""

    def run(fn):
        monkeypatch.setenv("SEQFLOW_KERNELS", "0")
        try:
            return fn()
        finally:
            monkeypatch.delenv("SEQFLOW_KERNELS")

    return run


def _cell(cls, n_in, n_hid, seed):
    torch.manual_seed(seed)
    cell = cls(n_in, n_hid)
    with torch.no_grad():  # larger than the notebook's 0.01 so the gates are not all ~0.5
        for p in cell.parameters():
            p.normal_(0.0, 0.3)
    return cell


def _state(cls, batch, n_hid, gen):
    h = (torch.randn(batch, n_hid, generator=gen) * 0.5).requires_grad_()
    if cls is LSTMScratch:
        return h, (torch.randn(batch, n_hid, generator=gen) * 0.5).requires_grad_()
    return h


def _flat(state):
    return state if isinstance(state, tuple) else (state,)


def _outputs_and_grads(cell, x, state, weights):
    out, final = cell(x, state)
    loss = (out * weights).sum() + sum(f.square().sum() for f in _flat(final))
    leaves = [*cell.parameters(), x, *_flat(state)]
    return out.detach(), torch.autograd.grad(loss, leaves)


def test_the_kernels_build_and_load():
    assert kernels.library() is not None, "models/cells.c did not build: see the warning"
    assert kernels.usable(torch.zeros(1))
    assert not kernels.usable(torch.zeros(1, dtype=torch.float64))  # float64: torch path


@pytest.mark.parametrize("n_in", [6, 70])
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("cls", CELLS)
def test_kernel_equals_reference_and_torch_gradients(cls, threads, n_in, torch_path):
    """Inputs that need a gradient (as a stacked layer's), a given initial state, a loss
    reading the outputs and the final state; 40 rows split over `threads` OpenMP threads.
    A third of the inputs are zero, and 70 inputs span two of the kernel's 64-wide masks."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(7)
        cell = _cell(cls, n_in, 8, seed=3)
        x = torch.randn(40, 9, n_in, generator=gen)
        x = x.masked_fill(x.abs() < 0.43, 0.0).requires_grad_()
        state = _state(cls, 40, 8, gen)
        weights = torch.randn(40, 9, 8, generator=gen)
        assert kernels.usable(x)
        out, grads = _outputs_and_grads(cell, x, state, weights)
        ref_out, ref_final = step_reference(cell, x, state)
        torch.testing.assert_close(out, ref_out.detach(), atol=1e-6, rtol=0)
        t_out, t_grads = torch_path(lambda: _outputs_and_grads(cell, x, state, weights))
        torch.testing.assert_close(out, t_out, atol=1e-6, rtol=0)
        for a, b in zip(grads, t_grads, strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("kind", ["rnn_scratch", "lstm_scratch", "gru_scratch"])
def test_one_hot_batches_as_in_training(kind, torch_path):
    """The notebook's setting: one-hot characters (the kernels skip the zeros), 2 stacked
    layers (the second reads the first's strided outputs), 2 threads, the output layer and
    cross-entropy: the same loss and gradients as the torch formulation."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        model = CharLM(34, kind, hidden=32, n_layers=2)
        ids = torch.randint(0, 34, (96, 33), generator=torch.Generator().manual_seed(1))

        def loss_and_grads():
            logits = model(ids[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, 34), ids[:, 1:].reshape(-1))
            return loss.detach(), torch.autograd.grad(loss, list(model.parameters()))

        loss, grads = loss_and_grads()
        t_loss, t_grads = torch_path(loss_and_grads)
        torch.testing.assert_close(loss, t_loss, atol=1e-6, rtol=0)
        for a, b in zip(grads, t_grads, strict=True):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("cls", CELLS)
def test_empty_sequences_and_state_carry(cls):
    gen = torch.Generator().manual_seed(5)
    cell = _cell(cls, 4, 5, seed=1)
    state = _state(cls, 3, 5, gen)
    out, final = cell(torch.zeros(3, 0, 4), state)
    assert out.shape == (3, 0, 5)
    for a, b in zip(_flat(final), _flat(state), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    x = torch.randn(3, 10, 4, generator=gen)
    whole, _ = cell(x)
    first, mid = cell(x[:, :4])
    rest, _ = cell(x[:, 4:], mid)
    torch.testing.assert_close(torch.cat([first, rest], 1), whole, atol=1e-6, rtol=0)


def test_recurrence_functions_take_either_path(torch_path):
    """recurrence.lstm on float32 runs the kernel; on float64 the torch formulation; both
    return [B, T, H] outputs that agree."""
    gen = torch.Generator().manual_seed(9)
    args = [torch.randn(*s, generator=gen) * 0.5 for s in [(5, 7, 3), (3, 16), (16,), (4, 16)]]
    h0 = c0 = torch.zeros(5, 4)
    out32, (h32, _) = recurrence.lstm(*args, h0, c0)
    out64, (h64, _) = recurrence.lstm(*[a.double() for a in args], h0.double(), c0.double())
    assert out32.shape == out64.shape == (5, 7, 4)
    torch.testing.assert_close(out32.double(), out64, atol=1e-6, rtol=0)
    torch.testing.assert_close(out32[:, -1], h32, atol=0, rtol=0)


def test_without_a_compiler_the_cells_fall_back_with_a_warning(tmp_path):
    """A fresh cache and CC pointing nowhere: build() names the fix, library() warns once and
    returns None, and the cells still compute through the torch formulation."""
    code = """
import warnings, torch
from models import kernels
from models.charlm import LSTMScratch, step_reference
try:
    kernels.build()
except RuntimeError as e:
    print("BUILD:", e)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    cell = LSTMScratch(3, 4)
    x = torch.randn(2, 5, 3)
    out, _ = cell(x)
    cell(x)
print("LIB:", kernels.library())
print("WARNINGS:", len(caught), caught[0].message if caught else "")
print("EQUAL:", torch.allclose(out, step_reference(cell, x)[0], atol=1e-6))
"""
    env = {**os.environ, "CC": "no-such-compiler", "SEQFLOW_KERNEL_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert "no C compiler" in lines["BUILD"] and "set CC" in lines["BUILD"]
    assert lines["LIB"] == "None"
    assert lines["WARNINGS"].startswith("1 ") and "torch formulation" in lines["WARNINGS"]
    assert lines["EQUAL"] == "True"
    assert not list(tmp_path.iterdir())  # nothing half-built left in the cache


def test_the_build_is_cached_by_content(tmp_path):
    first = kernels.build(tmp_path)
    assert kernels.build(tmp_path) == first  # a second call reuses the file
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary leftovers


def test_loading_the_kernels_keeps_denormals():
    """-ffast-math is for the compile step only: a library linked with it would switch the
    whole process to flush-to-zero and change every other pipeline's float results."""
    import numpy as np

    assert kernels.library() is not None
    tiny = 1e-39  # below float32's smallest normal number (1.2e-38)
    assert float(torch.tensor([tiny]) * 1.0) > 0
    assert float(np.float32(tiny) * np.float32(1.0)) > 0
