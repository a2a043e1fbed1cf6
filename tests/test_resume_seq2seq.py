"""Kill `seqflow run seq2seq` (SIGKILL) after its first checkpoint, run the same command again:
it resumes mid-training and ends with the metrics of an uninterrupted run."""

import re

from tasks.engine.tracking import values
from tests.resume import assert_resumes_like_uninterrupted, checkpoints

EPOCHS = 5
ARGS = ["run", "seq2seq", "--profile", "quick", "--set", "data.limit_train=300",
        "--set", f"train.epochs={EPOCHS}", "--set", "train.max_steps_per_epoch=3",
        "--set", "evaluate.max_len=10"]  # fmt: skip


def test_killed_run_resumes_like_an_uninterrupted_one(prefect_server, tmp_path):
    seen = []

    def ready(paths):  # the first epoch's checkpoint is written: kill now
        seen.extend(p.name for p in paths)
        return bool(paths)

    reference, resumed = assert_resumes_like_uninterrupted(
        tmp_path, "seq2seq", ARGS, ready,
        ["final_train_loss", "best_val_loss", "test_loss", "test_bleu"],
    )  # fmt: skip
    # the kill landed mid-training: the re-run continued after epoch k of 5, 1 <= k < 5
    done = int(resumed.data.tags["resumed_from_epoch"])
    assert 1 <= done < EPOCHS, done
    assert re.fullmatch(r"epoch-000[1-4]\.pt", seen[-1]), seen
    assert "resuming after epoch" in (tmp_path / "resumed.log").read_text()
    assert not checkpoints(tmp_path / "killed", "seq2seq")  # the model is logged: they go
    for run in (reference, resumed):
        assert values(run)["best_epoch"] >= 1 and values(run)["n_params"] > 0
