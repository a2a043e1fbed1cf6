"""Parity checks: a word2vec parity run on the full data passes every check; a deliberately
broken setting fails the run and names the check."""

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.config import load_config
from flows.word2vec import word2vec
from tasks.engine.parity import Check, ParityError, report
from tasks.engine.tracking import values


def test_checks_compare_with_their_operator():
    assert Check("n", 3).passes(3) and not Check("n", 3).passes(4)
    assert Check("loss", 6.75, "<=").passes(6.75) and not Check("loss", 6.75, "<=").passes(6.8)
    assert Check("x", 1.0641, tol=5e-5).passes(1.06408) and not Check("x", 1.0, tol=0.1).passes(2)
    assert not Check("x", 1.0, tol=0.1).passes(float("nan"))
    assert not Check("n", 3).passes(None)
    markdown, failed = report("p", [Check("a", 1), Check("b", 2.5, "<")], {"a": 1, "b": 3.0})
    assert failed == ["b"]
    assert "| a | 1 | 1 | pass |" in markdown and "| b | < 2.5 | 3 | **FAIL** |" in markdown
    assert "1 of 2 checks pass" in markdown
    _, failed = report("p", [Check("a", 1)], {})
    assert failed == ["a"]


def artifact(c: MlflowClient, run_id: str, name: str) -> str:
    return Path(c.download_artifacts(run_id, name)).read_text()


def test_word2vec_parity_run_passes_every_check(prefect_server, data_dir):
    run_id = word2vec(config=load_config("word2vec", "parity"))
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri)
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert values(run)["parity_failures"] == 0
    table = artifact(c, run_id, "parity.md")
    assert "4 of 4 checks pass" in table
    for row in ("| rows | 31,962 | 31,962 | pass |", "| vocab_size | 3,085 | 3,085 | pass |",
                "| tok2id[father] | 1 | 1 | pass |"):  # fmt: skip
        assert row in table
    assert "| final_train_loss | <= 6.75 |" in table


BROKEN = ["vocab.min_count=5", "train.epochs=1", "train.max_steps_per_epoch=2"]


def test_a_broken_setting_fails_the_check_that_it_breaks(prefect_server, data_dir):
    with pytest.raises(ParityError, match=r"vocab_size: expected 3,085, got \d"):
        word2vec(config=load_config("word2vec", "parity", BROKEN))
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri)
    [run] = c.search_runs([c.get_experiment_by_name("word2vec").experiment_id])
    assert run.info.status == "FAILED"
    assert "vocab_size: expected 3,085" in run.data.tags["failure_reason"]
    assert values(run)["parity_failures"] == 2  # vocab size and final loss
    table = artifact(c, run.info.run_id, "parity.md")
    assert "| rows | 31,962 | 31,962 | pass |" in table and "| vocab_size | 3,085 |" in table
    assert table.count("**FAIL**") == 2 and "| tok2id[father] | 1 | 1 | pass |" in table

    # strict_parity off: the same failures are logged, the run finishes
    run_id = word2vec(config=load_config("word2vec", "parity", [*BROKEN, "strict_parity=false"]))
    run = c.get_run(run_id)
    assert run.info.status == "FINISHED" and values(run)["parity_failures"] == 2
