"""charlm on 2 DDP ranks (gloo): the same training as one process on the same global batches,
for a scratch kind (the hand-written cells) and a torch.nn kind; and `--nproc 2` end to end."""

import pytest

from flows.config import load_config
from tasks.chars import encode_chars, ingest_book, window_chars
from tasks.runtime.loop import Build, Plan
from tasks.runtime.trainer import fit
from tasks.train.charlm import perplexity
from tests import resume

TINY = ["windows.n_train=512", "windows.n_test=128", "train.epochs=2", "train.batch_size=64",
        "train.hidden=16", "train.dropout=0", "train.device=cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    cfg = load_config("charlm", "quick", TINY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEQFLOW_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        book = ingest_book.fn("charlm", cfg.data.dataset, cfg.data.file)
        chars = encode_chars.fn("charlm", book, cfg.data.notebook_text)
        yield cfg, window_chars.fn("charlm", chars, cfg.windows).path


@pytest.mark.parametrize("kind", ["gru_scratch", "lstm"])
def test_two_ranks_train_like_one_process(windows, kind):
    cfg, path = windows
    build = Build("tasks.train.charlm:recipe", {"windows": path, "kind": kind, "vocab_size": 34,
                                                 "cfg": cfg.train})  # fmt: skip
    one, fitted1 = fit(build, Plan.of(cfg.train, progress=False))
    two, fitted2 = fit(build, Plan.of(cfg.train, nproc=2, progress=False))
    assert len(fitted1.step_losses) == len(fitted2.step_losses) == 2 * 8  # 512 / 64 a epoch
    assert fitted2.step_losses == pytest.approx(fitted1.step_losses, rel=1e-4, abs=1e-4)
    for key in ("train_loss", "train_ppl", "test_ppl"):
        assert fitted2.series(key) == pytest.approx(fitted1.series(key), rel=1e-4), key
    assert fitted2.items == fitted1.items == 2 * 512 * 32  # every rank's characters counted
    for (name, a), b in zip(one.model.state_dict().items(), two.model.state_dict().values(),
                            strict=True):  # fmt: skip
        assert b.cpu().numpy() == pytest.approx(a.cpu().numpy(), rel=1e-3, abs=1e-5), name


def test_seqflow_run_nproc_2(prefect_server, tmp_path):
    args = ["run", "charlm", "--profile", "quick", "--nproc", "2",
            *[a for s in [*TINY, 'train.kinds=["gru_scratch"]', "train.epochs=1"]
              for a in ("--set", s)]]  # fmt: skip
    log = tmp_path / "run.log"
    assert resume.run(args, tmp_path / "data", log, timeout=300) == 0, log.read_text()
    (parent,) = resume.parent_runs(tmp_path / "data", "charlm")
    assert parent.info.status == "FINISHED" and parent.data.params["train.nproc"] == "2"
    kids = resume.children(tmp_path / "data", parent.info.run_id, "charlm")
    assert list(kids) == ["gru_scratch"] and kids["gru_scratch"].data.metrics["chars_per_sec"] > 0
    assert not resume.checkpoints(tmp_path / "data", "charlm")  # gone once registered


def test_cosine_schedule_warms_up_then_ends_at_the_floor_on_the_runs_last_step(windows):
    cfg, path = windows
    train = cfg.train.model_copy(update={"schedule": "cosine", "warmup": 3, "lr_floor": 0.1,
                                         "optimizer": "adamw", "lr": 1e-2,
                                         "max_steps_per_epoch": 5})  # fmt: skip
    build = Build("tasks.train.charlm:recipe", {"windows": path, "kind": "gru", "vocab_size": 34,
                                                 "cfg": train})  # fmt: skip
    recipe = build()
    lrs = []
    for _ in range(10):  # 2 epochs of at most 5 steps: the schedule spans exactly 10
        lrs.append(recipe.optimizer.param_groups[0]["lr"])
        recipe.optimizer.step()
        recipe.scheduler.step()
    assert lrs[:3] == pytest.approx([1e-2 / 3, 2e-2 / 3, 1e-2])
    assert lrs[3] == pytest.approx(1e-2)
    assert all(a > b for a, b in zip(lrs[3:-1], lrs[4:], strict=True))  # decays after warm-up
    assert lrs[-1] == pytest.approx(1e-3)  # lr x floor on the last step
    recipe, fitted = fit(build, Plan.of(train, progress=False))
    assert len(fitted.step_losses) == 10
    assert recipe.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)


def test_validation_share_keeps_the_epoch_with_the_lowest_val_ppl(windows, tmp_path):
    cfg, path = windows
    train = cfg.train.model_copy(update={"validation_share": 0.25, "epochs": 3, "lr": 30.0})
    build = Build("tasks.train.charlm:recipe", {"windows": path, "kind": "gru", "vocab_size": 34,
                                                 "cfg": train, "overlap": 2})  # fmt: skip
    recipe, fitted = fit(build, Plan.of(train, progress=False), checkpoints=tmp_path)
    assert len(recipe.data) == 512 - 128 - 2 and len(recipe.valid) == 128  # carved, gap of 2
    assert recipe.select == ("val_ppl", "min") and len(recipe.test) == 128
    val = fitted.series("val_ppl")
    assert len(val) == 3 and fitted.best_epoch == val.index(min(val))
    # the model returned is the best epoch's: its val_ppl is the lowest one logged
    assert perplexity(recipe.model, recipe.valid, 64, "cpu") == pytest.approx(min(val), rel=1e-5)
    assert fitted.best_epoch < 2, f"lr 30 should make a later epoch worse than an earlier: {val}"
