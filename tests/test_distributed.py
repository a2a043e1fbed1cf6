"""word2vec on DDP through the runtime (gloo, 2 processes on CPU): every rank builds the recipe
from the Parquet stage files and trains on its slice of every global batch, so 2 ranks train the
model 1 process trains on the same batches — for both launchers; only rank 0 logs."""

import numpy as np
import pytest
import torch

from flows.config import load_config
from tasks.data import ingest_csv
from tasks.engine import tracking
from tasks.runtime.loop import Build, Plan
from tasks.runtime.trainer import fit
from tasks.text import tokenize_tweets
from tasks.vocab import build_vocab, drop_rare_tokens
from tasks.windows import window_pairs
from tests.test_cli import run_id_of


@pytest.fixture
def stages(data_dir):
    cfg = load_config("word2vec", "quick", ["data.limit_rows=1500"])
    rows = ingest_csv.fn("word2vec", "tweets_hate_speech", "train.csv", 1500)
    tokens = tokenize_tweets.fn("word2vec", rows, cfg.tokenize)
    vocab = build_vocab.fn("word2vec", tokens, cfg.vocab.min_count)
    encoded = drop_rare_tokens.fn("word2vec", tokens, vocab)
    pairs = window_pairs.fn("word2vec", encoded, cfg.windows.size, 4096)
    return cfg, pairs, vocab


@pytest.mark.parametrize("launcher", ["spawn", "torchrun"])
def test_two_process_ddp_matches_one_process_and_logs_once(stages, data_dir, launcher):
    cfg, pairs, vocab = stages
    # 511 pairs a step: the ranks' slices differ in size (255, 256), the loss is rescaled
    train = cfg.train.model_copy(update={"epochs": 2, "max_steps_per_epoch": 4,
                                         "batch_size": 511, "nproc": 2,
                                         "launcher": launcher})  # fmt: skip
    build = Build("tasks.train.word2vec:recipe",
                  {"pairs": pairs.path, "vocab": vocab.path, "cfg": train})  # fmt: skip
    run_id = tracking.start_run("word2vec-ddp-test", {}, {})
    ddp, two = fit(build, Plan.of(train, progress=False), run_id=run_id)
    tracking.end_run(run_id)
    one_process, one = fit(build, Plan.of(train, nproc=1, progress=False))

    assert len(two.step_losses) == len(one.step_losses) == 8
    np.testing.assert_allclose(two.step_losses, one.step_losses, rtol=1e-4)
    np.testing.assert_allclose(two.train_loss, one.train_loss, rtol=1e-4)
    assert one.step_losses[-1] < one.step_losses[0]  # it learns
    assert two.items == one.items == 2 * 4 * 511
    for name, param in one_process.model.state_dict().items():
        torch.testing.assert_close(ddp.model.state_dict()[name], param, rtol=1e-4, atol=1e-5)

    history = tracking.client().get_metric_history(run_id, "train_loss")
    assert sorted(m.step for m in history) == [0, 1]  # rank 0 only: one value per epoch
    np.testing.assert_allclose(sorted(history, key=lambda m: m.step)[-1].value,
                               one.train_loss[-1], rtol=1e-4)  # fmt: skip
    assert tracking.get_run(run_id).data.metrics["final_train_loss"] == pytest.approx(
        one.train_loss[-1], rel=1e-4
    )


def test_seqflow_run_nproc_2_trains_logs_and_registers(prefect_server, data_dir, capsys):
    from flows.cli import main

    overrides = ["data.limit_rows=800", "vocab.min_count=2", "train.epochs=2",
                 "train.max_steps_per_epoch=3"]  # fmt: skip
    args = ["run", "word2vec", "--profile", "quick", "--nproc", "2"]
    assert main([*args, *[a for o in overrides for a in ("--set", o)]]) == 0
    run_id = run_id_of(capsys.readouterr().out)
    run = tracking.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["ddp_world_size"] == "2"
    history = tracking.client().get_metric_history(run_id, "train_loss")
    assert sorted(m.step for m in history) == [0, 1]
    assert run.data.metrics["pairs_per_sec"] > 0 and 0 <= run.data.metrics["downstream_f1"] <= 1
    assert tracking.client().get_model_version("word2vec", "1").run_id == run_id
    assert not list((data_dir / "checkpoints" / "word2vec").glob("*/epoch-*.pt"))  # logged


def test_settings_ddp_cannot_run_are_refused_with_the_fix():
    from flows.cli import parser
    from tasks.train.word2vec import check_ddp

    args = parser().parse_args(["run", "word2vec", "--runner", "dask", "--nproc", "2"])
    assert (args.runner, args.nproc) == ("dask", 2)
    cfg = load_config("word2vec", "quick", ["train.nproc=2"]).train
    check_ddp(cfg)  # fine
    check_ddp(cfg.model_copy(update={"batch_size": 1023}))  # any batch size: slices may differ
    check_ddp(cfg.model_copy(update={"model": "sgns", "nproc": 1}))
    with pytest.raises(ValueError, match="train.model=softmax"):
        check_ddp(cfg.model_copy(update={"model": "sgns"}))


def test_nproc_on_another_pipeline_is_refused_before_any_work(capsys):
    from flows.cli import DDP_PIPELINES, main
    from flows.pipelines import NAMES

    others = [p for p in NAMES if p not in DDP_PIPELINES]
    if not others:
        pytest.skip("every pipeline trains on DDP")
    assert main(["run", others[0], "--profile", "quick", "--nproc", "2"]) == 2
    assert "DDP training is built for" in capsys.readouterr().err
