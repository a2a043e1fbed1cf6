"""The airline forecaster on the training runtime: a NaN in a batch stops it naming the epoch and
the step (the last good checkpoint kept), and a SIGKILLed `seqflow run airline` resumes from its
checkpoint and ends like an uninterrupted run."""

import numpy as np
import pytest
import torch

from flows.config import load_config
from tasks.runtime import checkpoint
from tasks.runtime.faults import NonFiniteLoss
from tasks.runtime.loop import Plan
from tasks.runtime.trainer import fit
from tasks.train.airline import ForecastRecipe
from tests.resume import assert_resumes_like_uninterrupted

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def windows() -> np.ndarray:
    return np.sin(np.arange(40 * 6, dtype=np.float32) / 5).reshape(40, 6, 1)


def test_a_bad_batch_stops_the_forecaster_naming_epoch_and_step():
    x = windows()
    x[13, 2, 0] = np.nan  # in the second batch of 8
    cfg = load_config("airline", "quick", ["train.epochs=2", "train.hidden=4"]).train
    recipe = ForecastRecipe(cfg, lambda model: (0.0, 0.0), train=(x, x))
    with pytest.raises(NonFiniteLoss, match="airline: training loss became nan at epoch 1, step 2"):
        fit(recipe, Plan.of(cfg, progress=False))


class PoisonedAt(ForecastRecipe):
    """The forecaster whose training windows turn NaN at the start of epoch `at` (0-based)."""

    at = 2

    def start_epoch(self, epoch: int) -> None:
        if epoch == self.at:
            self.x[13, 2, 0] = float("nan")


def test_nan_mid_training_keeps_the_last_good_checkpoint(tmp_path):
    cfg = load_config("airline", "quick", ["train.epochs=5", "train.hidden=4"]).train
    recipe = PoisonedAt(cfg, lambda model: (0.0, 0.0), train=(windows(), windows()))
    with pytest.raises(NonFiniteLoss, match="at epoch 3, step 2") as caught:
        fit(recipe, Plan.of(cfg, checkpoint_every=1, progress=False), checkpoints=tmp_path)
    kept = sorted(tmp_path.glob("epoch-*.pt"))  # the last good epoch's and the one before
    assert [p.name for p in kept] == ["epoch-0001.pt", "epoch-0002.pt"]
    assert str(kept[-1]) in str(caught.value)
    state = checkpoint.load(kept[-1])  # weights only
    assert state["epoch"] == 1 and all(torch.isfinite(t).all() for t in state["model"].values())


def test_a_shuffled_run_resumed_from_its_checkpoint_ends_like_an_uninterrupted_one(tmp_path):
    sets = ["train.epochs=4", "train.hidden=4", "train.shuffle=true"]
    cfg = load_config("airline", "quick", sets).train

    def made():
        return ForecastRecipe(cfg, lambda model: (0.0, 0.0), train=(windows(), windows()))

    whole, _ = fit(made(), Plan.of(cfg, checkpoint_every=1, progress=False))
    fit(made(), Plan.of(cfg, epochs=2, checkpoint_every=1, progress=False), checkpoints=tmp_path)
    resumed, fitted = fit(made(), Plan.of(cfg, checkpoint_every=1, progress=False),
                          checkpoints=tmp_path)  # fmt: skip
    assert fitted.resumed_epochs == 2  # the shuffle's generator continued from the checkpoint
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values(),
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)


EPOCHS = 200  # the quick profile: ~3 s of training, the kill lands after epoch 10
ARGS = ["run", "airline", "--profile", "quick", "--set", f"train.epochs={EPOCHS}",
        "--set", "train.checkpoint_every=10"]  # fmt: skip


def test_a_killed_airline_run_resumes_and_ends_like_an_uninterrupted_one(prefect_server, tmp_path):
    kill_at = []

    def ready(found):  # the first checkpoint: 190 epochs still to go
        if found:
            kill_at.append(checkpoint.load(found[-1])["epoch"] + 1)
        return found

    keys = ["train_rmse", "test_rmse", "test_rmse_next", "final_train_loss"]
    _, resumed = assert_resumes_like_uninterrupted(tmp_path, "airline", ARGS, ready, keys)
    assert kill_at and kill_at[0] < EPOCHS  # it was killed mid-training
    assert kill_at[0] <= int(resumed.data.tags["resumed_from_epoch"]) < EPOCHS
