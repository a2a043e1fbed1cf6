"""GPU fast paths, run on the CPU: the code paths a GPU takes, checked for the same results."""

import numpy as np
import pytest
import torch

from models.seq2seq import Seq2Seq
from tasks.engine.accel import autocast, bf16_supported, compiled, to_device, use_cudnn
from tasks.runtime.loop import Plan, Recipe, pick_device
from tasks.runtime.trainer import fit
from tasks.translation import PAD

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 30, (7, 5), generator=g)  # [S, B]
    trg = torch.randint(4, 25, (6, 5), generator=g)  # [T, B]
    trg[4:, 1] = PAD  # a shorter target
    return src, trg


def test_forced_decoder_runs_as_one_call_with_the_step_loop_loss_and_gradients():
    src, trg = batch()
    model = Seq2Seq(30, 25, emb_dim=8, hid_dim=16, n_layers=2, dropout=0.0)
    fast = model.loss(src, trg, PAD, 1.0)
    fast.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    hidden, cell = model.encoder(src)
    tops = model._decode_steps(trg, hidden, cell, 1.0)  # the loop, always forced
    keep = trg[1:] != PAD
    slow = torch.nn.functional.cross_entropy(model.decoder.fc_out(tops[keep]), trg[1:][keep])
    slow.backward()
    torch.testing.assert_close(fast, slow, rtol=1e-6, atol=1e-6)
    for g, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)


class OneBatch(Recipe):
    """A Seq2Seq on one fixed batch: the runtime's step, in fp32 or under bf16 autocast."""

    name, unit, clip = "seq2seq", "tokens", 1.0

    def __init__(self, src, trg):
        torch.manual_seed(0)
        self.src, self.trg = src, trg
        self.model = Seq2Seq(30, 25, emb_dim=8, hid_dim=16, n_layers=1, dropout=0.0)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)

    def batches(self, epoch):
        return [0]

    def loss(self, model, batch):
        return model.loss(self.src, self.trg, PAD, 0.5), int((self.trg[1:] != PAD).sum())


def test_bf16_autocast_training_step_close_to_fp32():
    src, trg = batch(1)
    losses = {}
    for precision in ("fp32", "bf16"):
        _, fitted = fit(OneBatch(src, trg), Plan(epochs=1, precision=precision, progress=False))
        losses[precision] = fitted.train_loss[0]
    assert np.isfinite(losses["bf16"])
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=2e-2)
    with autocast(torch.device("cpu"), "bf16"):  # bf16 where the CPU has the kernels
        low = (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert low == bf16_supported("cpu")
    with pytest.raises(ValueError, match="precision"):
        autocast(torch.device("cpu"), "fp8")


def test_compiled_loss_matches_eager():
    src, trg = batch(2)
    model = Seq2Seq(30, 25, emb_dim=8, hid_dim=16, n_layers=1, dropout=0.0)
    assert compiled(model.loss, False) == model.loss
    fast = compiled(model.loss, True, backend="eager")  # inductor needs a C compiler: slow here
    torch.testing.assert_close(fast(src, trg, PAD, 1.0), model.loss(src, trg, PAD, 1.0))


def test_device_choice_and_host_transfers_on_cpu():
    assert pick_device("cpu") == torch.device("cpu")  # forced by train.device
    assert pick_device("auto").type in ("cuda", "mps", "cpu")
    t = to_device(np.arange(6).reshape(2, 3), torch.device("cpu"))
    assert t.device.type == "cpu" and not t.is_pinned() and t.tolist() == [[0, 1, 2], [3, 4, 5]]
    before = torch.backends.cudnn.benchmark
    use_cudnn(torch.device("cpu"))  # a no-op off the GPU
    assert torch.backends.cudnn.benchmark == before
