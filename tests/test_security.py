"""Security: weights-only checkpoints, no code from data or config, credentials kept out of the
tracking store, servers on 127.0.0.1 (docs/reliability.md, "Security")."""

import re
from pathlib import Path

import pytest
import torch

from tasks.engine import tracking
from tasks.runtime import checkpoint

REPO = Path(__file__).resolve().parent.parent


class Payload:
    """What a hostile checkpoint holds: unpickling it would create the file `path`."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_checkpoint_holding_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "epoch-0001.pt"
    torch.save({"model": {}, "history": Payload(marker)}, bad)
    with pytest.raises(RuntimeError, match=r"epoch-0001.pt holds objects other than weights.*Del"):
        checkpoint.load(bad)
    assert checkpoint.latest(tmp_path) is None  # a resume skips it, never runs it
    assert not marker.exists()


def test_our_checkpoint_loads_weights_only(tmp_path):
    """What the runtime writes (model, optimizer, RNG states, history) is weights-only."""
    from tasks.runtime.loop import Fitted, Recipe, _state

    recipe = Recipe()
    recipe.model = torch.nn.Linear(2, 1)
    recipe.optimizer = torch.optim.Adam(recipe.model.parameters())
    fitted = Fitted(history=[{"train_loss": 2.5, "val_loss": 3.0}], items=1000, seconds=2.0)
    path = checkpoint.save(tmp_path, 0, _state(recipe, 0, fitted, {"run_ids": ["abc"]}))
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["history"] == fitted.history and state["epoch"] == 0
    assert torch.equal(state["model"]["weight"], recipe.model.weight.detach())
    assert set(state["rng"]) >= {"torch", "python", "numpy_global"}


# Code that could run what a file or a config says: none of it may appear in the project.
UNSAFE = {
    r"weights_only\s*=\s*False": "torch.load must stay weights-only",
    r"\bpickle\.loads?\(": "no pickle from data",
    r"\byaml\.(load|unsafe_load|full_load)\(": "yaml.safe_load only",
    r"(?<![.\w])(eval|exec)\(": "no eval/exec",
    r"\.extractall\(|\btar\.extract\(": "archives go through tasks/archive.py",
    r"0\.0\.0\.0": "servers bind 127.0.0.1",
}


def test_no_unsafe_loading_in_the_code():
    sources = [
        p for d in ("flows", "tasks", "models", "bench", "tests") for p in (REPO / d).rglob("*.py")
    ]
    sources += [REPO / "Makefile", REPO / "prefect.yaml", REPO / "README.md"]
    found = []
    for path in sources:
        if path.name == "test_security.py" or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        for pattern, why in UNSAFE.items():
            for m in re.finditer(pattern, text):
                line = text.count("\n", 0, m.start()) + 1
                found.append(f"{path.relative_to(REPO)}:{line}: {m.group()} ({why})")
    assert found == []


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("http://user:pass@host:5000", "http://***@host:5000"),
        ("https://ghp_TOKEN@github.com/a/b.git", "https://***@github.com/a/b.git"),
        (
            "error: postgresql://bob:hunter2@db/mlflow and s3://k:s@bucket/x",
            "error: postgresql://***@db/mlflow and s3://***@bucket/x",
        ),
        ('["http://a:b@h/x", 3]', '["http://***@h/x", 3]'),
        ("http://127.0.0.1:5000/#/runs/1", "http://127.0.0.1:5000/#/runs/1"),
        ("mail alice@example.com", "mail alice@example.com"),
    ],
)
def test_redact_hides_uri_credentials(raw, clean):
    assert tracking.redact(raw) == clean


def test_credentials_never_reach_params_tags_or_failure_reason(data_dir):
    secret_uri = "http://alice:s3cret@mlflow.example:5000"
    params = {"data.source": secret_uri, "data.mirrors": [secret_uri, "/local"], "epochs": 3}
    run_id = tracking.start_run("security", params, {"upstream": secret_uri})
    tracking.set_tags(run_id, {"later": f"pulled from {secret_uri}/x.csv"})
    tracking.end_run(run_id, "FAILED", f"ConnectionError: {secret_uri} refused")

    run = tracking.client().get_run(run_id)
    stored = {**run.data.params, **run.data.tags}
    assert not [k for k, v in stored.items() if "s3cret" in v or "alice" in v]
    assert run.data.params["data.source"] == "http://***@mlflow.example:5000"
    assert run.data.params["epochs"] == "3"
    assert (
        run.data.tags["failure_reason"] == "ConnectionError: http://***@mlflow.example:5000 refused"
    )


def test_every_server_the_project_starts_binds_localhost():
    """`seqflow ui`, the README's servers and the end-to-end fixtures pass --host 127.0.0.1;
    `seqflow serve`'s --host defaults to it."""
    files = [REPO / "flows" / "cli.py", REPO / "tests" / "servers.py", REPO / "README.md"]
    pattern = r'--host"?,?\s*(?:default=)?"?([\w.]+)'
    hosts = [m for f in files for m in re.findall(pattern, f.read_text())]
    assert len(hosts) >= 4 and set(hosts) == {"127.0.0.1"}
