"""charlm killed while its second model trains, then the same command again: the first model is
re-used from its final checkpoint, the second resumes, and both end like an uninterrupted run."""

import re

import pytest

from tests import resume

KINDS = ["rnn_scratch", "gru"]  # a scratch kind (the C kernels), then a torch.nn one
ARGS = ["run", "charlm", "--profile", "quick",
        *[a for s in [f"train.kinds={KINDS}".replace("'", '"'), "windows.n_train=4096",
                      "windows.n_test=256", "train.epochs=3", "train.hidden=16",
                      "evaluate.n_chars=5"] for a in ("--set", s)]]  # fmt: skip


def test_charlm_resumes_the_second_model_and_reuses_the_first(prefect_server, tmp_path):
    def second_model_checkpointed(paths):  # two folders: the first model's and the second's
        return len({p.parent for p in paths}) == 2

    reference, resumed = resume.assert_resumes_like_uninterrupted(
        tmp_path, "charlm", ARGS, second_model_checkpointed, ["test_ppl"], kinds=KINDS)  # fmt: skip
    killed_log = (tmp_path / "killed.log").read_text()
    assert "rnn_scratch: test perplexity" in killed_log  # the first model had finished
    assert "gru: test perplexity" not in killed_log
    log = (tmp_path / "resumed.log").read_text()
    # the first model at its last epoch (no retraining), the second mid-training
    assert re.search(r"rnn_scratch: resuming after epoch 3 ", log), log
    after = re.search(r"gru: resuming after epoch (\d+) ", log)
    assert after and 1 <= int(after.group(1)) < 3, log  # the SIGKILL landed mid-training
    assert "rnn_scratch epoch" not in log  # no epoch of the first model ran again
    data = tmp_path / "killed"
    (killed, _) = resume.parent_runs(data, "charlm")
    old = resume.children(data, killed.info.run_id, "charlm")
    assert old["rnn_scratch"].info.status == "FINISHED" and old["gru"].info.status == "KILLED"
    new = resume.children(data, resumed.info.run_id, "charlm")
    want = resume.children(tmp_path / "reference", reference.info.run_id, "charlm")
    for kind in KINDS:  # (test_ppl: compared above, with the parent's)
        got, ref = new[kind].data.metrics, want[kind].data.metrics
        for key in ("final_train_loss", "train_loss", "train_ppl"):
            assert got[key] == pytest.approx(ref[key], rel=1e-4), (kind, key)
    assert new["gru"].data.tags["resumed_from_run"] == old["gru"].info.run_id
    c = resume.store(data)
    for kind in KINDS:  # every epoch's figures are in the new child run (re-logged or trained)
        steps = [m.step for m in c.get_metric_history(new[kind].info.run_id, "train_ppl")]
        assert sorted(steps) == [0, 1, 2], kind
    assert not resume.checkpoints(data, "charlm")  # gone once the model is registered


def test_keep_models_names_the_surviving_checkpoints_and_cleans_up_after_success(data_dir):
    from flows.recover import ModelNotLogged, keep_models
    from tasks.runtime import checkpoint

    folders = {k: data_dir / "checkpoints" / "charlm" / k for k in KINDS}
    with pytest.raises(ModelNotLogged, match=r"rnn_scratch: .*epoch-0003\.pt \(epoch 3 of 3\)"):
        with keep_models(folders, 3) as where:
            assert where == folders  # this run holds both folders
            checkpoint.save(where["rnn_scratch"], 2, {"epoch": 2})
            raise RuntimeError("MLflow went away")
    assert checkpoint.latest(folders["rnn_scratch"]) is not None  # kept for the next run
    with keep_models(folders, 3) as where:
        with keep_models(folders, 3) as other:  # a second run of the same setup meanwhile
            assert other == {k: None for k in KINDS}  # trains without checkpoints
    assert not any(f.exists() for f in folders.values())  # registered: the checkpoints go
