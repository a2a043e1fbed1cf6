"""charlm ensembles (train.members): the mean of the members' next-character distributions,
read with a carried state like one CharLM; trained by the flow as nested member runs and
registered, served and scored as one model."""

import math

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from models.charlm import CharEnsemble, CharLM
from tasks.engine.tracking import values
from tasks.train.charlm import perplexity

V = 7


def _members(n: int = 2) -> list[CharLM]:
    out = []
    for k in range(n):
        torch.manual_seed(k)
        m = CharLM(V, "lstm", hidden=8, n_layers=2)
        with torch.no_grad():  # larger weights than the init so the members disagree clearly
            for p in m.parameters():
                p.normal_(0.0, 0.7)
        out.append(m.eval())
    return out


def test_ensemble_is_the_mean_of_the_members_probabilities():
    members = _members()
    ens = CharEnsemble(members).eval()
    ids = torch.randint(0, V, (3, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = torch.stack([m(ids).softmax(-1) for m in members]).mean(0)
        got = ens(ids)
    assert torch.allclose(got.exp(), want, atol=1e-6)
    assert torch.allclose(got.softmax(-1), want, atol=1e-6)  # read as logits: the same mean


def test_ensemble_carries_its_members_states_like_one_pass():
    ens = CharEnsemble(_members(3)).eval()
    ids = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        whole = ens(ids)
        first, state = ens.run(ids[:, :5])
        rest, _ = ens.run(ids[:, 5:], state)
    assert len(state) == 3
    assert torch.allclose(torch.cat([first, rest], dim=1), whole, atol=1e-6)


def test_ensemble_perplexity_is_at_most_the_members_geometric_mean():
    members = _members()
    windows = np.random.default_rng(0).integers(0, V, (16, 9)).astype(np.int8)
    each = [perplexity(m, windows, 8, "cpu") for m in members]
    both = perplexity(CharEnsemble(members), windows, 8, "cpu")
    assert both <= math.exp(np.mean(np.log(each))) + 1e-9
    assert both < min(each) * 1.5 and abs(both - each[0]) > 1e-3  # a real mix, not one member


def test_ensemble_refuses_mixed_or_bidirectional_members():
    with pytest.raises(ValueError, match="share the vocabulary and the kind"):
        CharEnsemble([CharLM(V, "lstm", 8), CharLM(V, "gru", 8)])
    with pytest.raises(ValueError, match="never an ensemble"):
        CharEnsemble([CharLM(V, "lstm_bidir", 8)])


def test_flow_trains_members_as_nested_runs_and_registers_the_ensemble(prefect_server, data_dir):
    from flows.charlm import charlm
    from flows.config import load_config
    from tasks.engine import tracking
    from tasks.train.charlm import read_split

    overrides = ["windows.n_train=1024", "windows.n_test=256", "train.epochs=2",
                 "train.hidden=16", 'train.kinds=["gru"]', "train.members=2",
                 "evaluate.n_chars=5"]  # fmt: skip
    parent = charlm(profile="quick", overrides=overrides)
    uri = f"sqlite:///{data_dir / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = c.get_run(parent).info.experiment_id
    (kind_run,) = c.search_runs([exp], f"tags.mlflow.parentRunId = '{parent}'")
    members = c.search_runs([exp], f"tags.mlflow.parentRunId = '{kind_run.info.run_id}'")
    assert sorted((r.data.tags["member"], r.data.params["seed"]) for r in members) == [
        ("1", "2023"), ("2", "2024")]  # fmt: skip
    for r in members:  # each member trained its own epochs
        steps = [m.step for m in c.get_metric_history(r.info.run_id, "train_ppl")]
        assert sorted(steps) == [0, 1]
    got = values(kind_run)
    each = [got["test_ppl.member1"], got["test_ppl.member2"]]
    assert each[0] != each[1]  # different seeds, different models
    assert got["test_ppl"] <= math.exp(np.mean(np.log(each))) + 1e-9
    assert values(c.get_run(parent))["test_ppl"] == got["test_ppl"]
    # registered as one model: it loads as the ensemble and scores what the run logged
    version = c.get_model_version_by_alias("charlm", "champion").version
    model = tracking.load_model("charlm", version)
    assert isinstance(model, CharEnsemble) and len(model.members) == 2
    config = load_config("charlm", profile="quick", overrides=overrides)
    from flows.charlm import plain_stages

    test = read_split(plain_stages(config)[2].path, "test")
    assert perplexity(model, test, 1024, "cpu") == pytest.approx(got["test_ppl"], rel=1e-6)
    served = mlflow.pyfunc.load_model("models:/charlm@champion")
    out = served.predict(pd.DataFrame({"prompt": ["En un lugar "]}), params={"length": 7})
    assert out["prompt"][0] == "en un lugar " and len(out["continuation"][0]) == 7


def test_a_failed_ensemble_run_names_its_members_checkpoints(data_dir):
    from flows.recover import ModelNotLogged, keep_models
    from tasks.runtime import checkpoint

    folders = {"lstm": data_dir / "checkpoints" / "charlm" / "lstm"}
    with pytest.raises(ModelNotLogged, match=r"lstm member-1: .*epoch-0003\.pt \(epoch 3 of 3\)"
                       r"; lstm member-2: .*epoch-0001\.pt \(epoch 1 of 3\)"):  # fmt: skip
        with keep_models(folders, 3) as where:
            checkpoint.save(where["lstm"] / "member-1", 2, {"epoch": 2})
            checkpoint.save(where["lstm"] / "member-2", 0, {"epoch": 0})
            raise RuntimeError("MLflow went away")
    assert checkpoint.latest(folders["lstm"] / "member-2") is not None  # kept for the next run
