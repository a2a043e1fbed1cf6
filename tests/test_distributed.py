"""DDP on CPU (gloo, 2 spawned processes) trains the model one process trains on the same
global batches, and only rank 0 logs: the MLflow run holds one loss per epoch."""

import numpy as np
import pytest
import torch

from flows.config import load_config
from tasks.data import ingest_csv
from tasks.engine import tracking
from tasks.text import tokenize_tweets
from tasks.train.word2vec_ddp import (
    rank_range,
    read_pair_rows,
    total_pairs,
    train_ddp,
    train_reference,
)
from tasks.vocab import build_vocab, drop_rare_tokens, read_vocab
from tasks.windows import read_pairs, window_pairs


@pytest.fixture
def stages(data_dir):
    cfg = load_config("word2vec", "quick", ["data.limit_rows=1500"])
    rows = ingest_csv.fn("word2vec", "tweets_hate_speech", "train.csv", 1500)
    tokens = tokenize_tweets.fn("word2vec", rows, cfg.tokenize)
    vocab = build_vocab.fn("word2vec", tokens, cfg.vocab.min_count)
    encoded = drop_rare_tokens.fn("word2vec", tokens, vocab)
    pairs = window_pairs.fn("word2vec", encoded, cfg.windows.size, 4096)
    return cfg, pairs, len(read_vocab(vocab)[0])


def test_ranks_read_disjoint_slices_covering_every_pair(stages):
    _, pairs, _ = stages
    n = total_pairs(pairs.path)
    assert pairs.stats["shards"] > 2 and n == pairs.stats["pairs"]
    parts = [read_pair_rows(pairs.path, *rank_range(n, r, 3)) for r in range(3)]
    assert [len(p) for p in parts] == [rank_range(n, r, 3)[1] - rank_range(n, r, 3)[0]
                                       for r in range(3)]  # fmt: skip
    np.testing.assert_array_equal(np.concatenate(parts), read_pairs(pairs))


def test_two_process_ddp_matches_one_process_and_logs_once(stages, data_dir):
    cfg, pairs, vocab_size = stages
    train = cfg.train.model_copy(
        update={"epochs": 2, "max_steps_per_epoch": 4, "batch_size": 512, "nproc": 2}
    )
    run_id = tracking.start_run("word2vec-ddp-test", {}, {})
    result, record = train_ddp(pairs.path, vocab_size, train, 2, run_id)
    tracking.end_run(run_id)
    model, epoch_loss, step_loss, _, _ = train_reference(pairs.path, vocab_size, train, 2)

    assert record["world"] == 2 and len(record["step_loss"]) == 8
    np.testing.assert_allclose(record["step_loss"], step_loss, rtol=1e-4)
    np.testing.assert_allclose(result.epoch_loss, epoch_loss, rtol=1e-4)
    assert step_loss[-1] < step_loss[0]  # it learns
    for name, param in model.state_dict().items():
        torch.testing.assert_close(result.model.state_dict()[name], param, rtol=1e-4, atol=1e-5)

    history = tracking.client().get_metric_history(run_id, "train_loss")
    assert sorted(m.step for m in history) == [0, 1]  # rank 0 only: one value per epoch
    np.testing.assert_allclose(sorted(history, key=lambda m: m.step)[-1].value, epoch_loss[-1],
                               rtol=1e-4)  # fmt: skip


def test_settings_ddp_cannot_run_are_refused_with_the_fix():
    from flows.cli import parser
    from tasks.train.word2vec_ddp import check

    args = parser().parse_args(["run", "word2vec", "--runner", "dask", "--nproc", "2"])
    assert (args.runner, args.nproc) == ("dask", 2)
    cfg = load_config("word2vec", "quick", ["train.nproc=2"]).train
    check(cfg, 2, 10_000)  # fine
    with pytest.raises(ValueError, match="train.model=softmax"):
        check(cfg.model_copy(update={"model": "sgns"}), 2, 10_000)
    with pytest.raises(ValueError, match="multiple of train.nproc"):
        check(cfg.model_copy(update={"batch_size": 1023}), 2, 10_000)
    with pytest.raises(ValueError, match="no full batch"):
        check(cfg, 2, 1000)


def test_nproc_on_another_pipeline_is_refused_before_any_work(capsys):
    from flows.cli import main

    assert main(["run", "charlm", "--profile", "quick", "--nproc", "2"]) == 2
    assert "DDP training is built for word2vec only" in capsys.readouterr().err
