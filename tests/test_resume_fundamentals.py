"""The three Laboratorio 3 models on the training runtime: a NaN/inf loss stops each of them
naming the epoch and the step (the last good checkpoint kept, exact), and a SIGKILLed
`seqflow run fundamentals` re-uses the finished kind's final checkpoint, resumes the kind it
was training and ends like an uninterrupted run."""

import numpy as np
import pytest
import torch

from flows.config import load_config
from tasks import toy
from tasks.runtime import checkpoint
from tasks.runtime.faults import NonFiniteLoss
from tasks.runtime.loop import Plan
from tasks.runtime.trainer import fit
from tasks.train.fundamentals import KINDS, NumpyRecipe, one_hot_pairs, recipe
from tests.resume import assert_resumes_like_uninterrupted, children, parent_runs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def toy_pairs() -> dict:
    seqs = toy.generate_data(rng=np.random.RandomState(toy.SEED))
    word_to_idx = toy.seqs_to_dicts(seqs)[0]
    train, val, test = toy.create_datasets(seqs)
    return one_hot_pairs({"train": train, "val": val, "test": test}, word_to_idx)


class Poison:
    """Turns one training sequence's inputs NaN at the start of epoch `epoch` (0-based)."""

    def __init__(self, made, epoch: int, step: int):
        self.made, self.epoch, self.step = made, epoch, step
        self.start = made.start_epoch
        made.start_epoch = self

    def __call__(self, epoch: int) -> None:
        self.start(epoch)
        if epoch == self.epoch:
            x = self.made.batches(epoch)[self.step][0]
            x[...] = float("nan")


@pytest.mark.parametrize("kind", KINDS)
def test_a_nan_loss_stops_every_kind_naming_epoch_and_step(kind, tmp_path):
    cfg = load_config("fundamentals", "quick").train
    made = recipe(kind, 4, toy_pairs(), cfg)
    Poison(made, epoch=1, step=2)
    with pytest.raises(NonFiniteLoss, match=f"{kind}: training loss became nan at epoch 2, "
                       "step 3") as caught:  # fmt: skip
        fit(made, Plan(3, checkpoint_every=1, progress=False), checkpoints=tmp_path)
    kept = sorted(tmp_path.glob("epoch-*.pt"))
    assert [p.name for p in kept] == ["epoch-0001.pt"] and str(kept[0]) in str(caught.value)
    state = checkpoint.load(kept[0])  # weights only
    weights = state["model"].values() if kind == "torch_lstm" else state["recipe"]["params"]
    assert state["epoch"] == 0 and all(torch.isfinite(w).all() for w in weights)


def test_numpy_params_checkpoint_as_float64_and_restore_exactly(tmp_path):
    cfg = load_config("fundamentals", "quick").train
    pairs = toy_pairs()
    made = recipe("numpy_lstm", 4, pairs, cfg)
    fit(made, Plan(2, progress=False), checkpoints=tmp_path)
    saved = checkpoint.load(sorted(tmp_path.glob("epoch-*.pt"))[-1])["recipe"]["params"]
    assert all(t.dtype == torch.float64 for t in saved)
    fresh = recipe("numpy_lstm", 4, pairs, cfg)
    assert isinstance(fresh, NumpyRecipe)
    fresh.load_state_dict({"params": saved})
    for a, b in zip(fresh.params, made.params, strict=True):
        np.testing.assert_array_equal(a, b)


TORCH_EPOCHS = 30
SETS = ['train.kinds=["numpy_rnn", "torch_lstm"]', "train.numpy_rnn_epochs=10",
        f"train.torch_epochs={TORCH_EPOCHS}", "train.checkpoint_every=1"]  # fmt: skip
ARGS = ["run", "fundamentals", "--profile", "quick", *(a for s in SETS for a in ("--set", s))]


def test_a_killed_fundamentals_run_resumes_the_running_kind_and_reuses_the_finished_one(
    prefect_server, tmp_path
):
    kill_at = []

    def ready(found):  # once torch_lstm (the second kind) has a checkpoint: 29 epochs to go
        for path in found:
            try:
                state = checkpoint.load(path)
            except (OSError, RuntimeError):  # replaced by the next epoch's meanwhile
                continue
            if "model" in state:  # the torch LSTM's; the NumPy RNN's holds no nn.Module
                kill_at.append(state["epoch"] + 1)
                return True
        return False

    keys = [f"{m}.{k}" for m in ("train_loss", "val_loss", "test_loss")
            for k in ("numpy_rnn", "torch_lstm")]  # fmt: skip
    reference, resumed = assert_resumes_like_uninterrupted(tmp_path, "fundamentals", ARGS,
                                                           ready, keys)  # fmt: skip
    assert kill_at and kill_at[0] < TORCH_EPOCHS  # killed mid-training of torch_lstm
    got = children(tmp_path / "killed", resumed.info.run_id, "fundamentals")
    want = children(tmp_path / "reference", reference.info.run_id, "fundamentals")
    for kind in ("numpy_rnn", "torch_lstm"):
        for key in ("train_loss", "val_loss", "test_loss", "final_train_loss"):
            assert got[kind].data.metrics[key] == pytest.approx(
                want[kind].data.metrics[key], rel=1e-4, abs=1e-6), (kind, key)  # fmt: skip
    assert got["numpy_rnn"].data.tags["resumed_from_epoch"] == "10"  # its final checkpoint
    assert kill_at[0] <= int(got["torch_lstm"].data.tags["resumed_from_epoch"]) < TORCH_EPOCHS
    killed = parent_runs(tmp_path / "killed", "fundamentals")[0]
    before = children(tmp_path / "killed", killed.info.run_id, "fundamentals")
    assert before["numpy_rnn"].info.status == "FINISHED"
    assert before["torch_lstm"].info.status == "KILLED"  # left RUNNING by the kill, closed
