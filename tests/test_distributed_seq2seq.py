"""seq2seq on DDP through the runtime (gloo, 2 processes on CPU): both ranks build the recipe
from the encoded stage's files, each trains on its slice of every global batch padded to the
whole batch's lengths, so 2 ranks train the model 1 process trains on the same batches."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from flows.config import load_config
from tasks.runtime.loop import Build, Plan
from tasks.runtime.trainer import fit
from tests import resume

VOCAB = 40


def encoded_folder(folder, seed: int = 0):
    """An encoded stage's files (train/valid.parquet of <sos> ids <eos>), random sentences."""
    rng = np.random.default_rng(seed)
    folder.mkdir()
    for split, n in (("train", 150), ("valid", 40)):
        cols = {name: [np.array([2, *rng.integers(4, VOCAB, rng.integers(3, 14)), 3], np.int32)
                       for _ in range(n)] for name in ("src_ids", "trg_ids")}  # fmt: skip
        ids = pa.list_(pa.int32())
        pq.write_table(pa.table({k: pa.array(v, ids) for k, v in cols.items()}),
                       folder / f"{split}.parquet")  # fmt: skip
    return folder


def test_two_process_ddp_matches_one_process_on_the_same_batches(tmp_path, data_dir):
    # dropout 0: one process draws one dropout mask over the batch, two ranks one each over
    # their halves, so with dropout the two differ by design. Teacher forcing draws from torch's
    # global RNG, seeded alike on every rank (and advanced alike: every rank pads to the global
    # batch's lengths and evaluates the same validation set), so it is kept at 0.5.
    # 15 sentences a batch: the ranks' slices differ in size (7, 8), the loss is rescaled.
    cfg = load_config("seq2seq", "quick", ["train.dropout=0", "train.batch_size=15",
                      "train.epochs=2", "train.max_steps_per_epoch=5", "train.device=cpu",
                      "train.nproc=2"]).train  # fmt: skip
    assert cfg.teacher_forcing == 0.5
    build = Build("tasks.train.seq2seq:recipe", {"encoded": encoded_folder(tmp_path / "encoded"),
                  "src_vocab": VOCAB, "trg_vocab": VOCAB, "cfg": cfg})  # fmt: skip
    ddp, two = fit(build, Plan.of(cfg, progress=False), tmp_path / "ddp")
    one_process, one = fit(build, Plan.of(cfg, nproc=1, progress=False), tmp_path / "one")

    assert len(two.step_losses) == len(one.step_losses) == 10
    np.testing.assert_allclose(two.step_losses, one.step_losses, rtol=1e-4)
    np.testing.assert_allclose(two.train_loss, one.train_loss, rtol=1e-4)
    np.testing.assert_allclose(two.series("val_loss"), one.series("val_loss"), rtol=1e-4)
    assert two.items == one.items and two.best_epoch == one.best_epoch
    assert one.step_losses[-1] < one.step_losses[0]  # it learns
    for name, param in one_process.model.state_dict().items():  # the best epoch's weights
        torch.testing.assert_close(ddp.model.state_dict()[name], param, rtol=1e-3, atol=1e-4)
    assert (tmp_path / "ddp" / "best.pt").exists()  # rank 0 checkpoints


def test_cli_run_on_two_processes(prefect_server, tmp_path):
    data = tmp_path / "data"
    args = ["run", "seq2seq", "--profile", "quick", "--nproc", "2",
            "--set", "data.limit_train=200", "--set", "train.epochs=2",
            "--set", "train.max_steps_per_epoch=2", "--set", "evaluate.max_len=5"]  # fmt: skip
    log = tmp_path / "run.log"
    assert resume.run(args, data, log, timeout=300) == 0, log.read_text()
    (run,) = resume.parent_runs(data, "seq2seq")
    assert run.info.status == "FINISHED" and run.data.params["train.nproc"] == "2"
    c = resume.store(data)
    assert [m.step for m in c.get_metric_history(run.info.run_id, "val_loss")] == [0, 1]
    assert {"test_bleu", "best_val_loss", "tokens_per_sec"} <= set(run.data.metrics)
    assert c.get_model_version_by_alias("seq2seq", "champion").run_id == run.info.run_id
