"""Every deployment in prefect.yaml points at a real flow with parameters it accepts."""

import importlib
import inspect
from pathlib import Path

import yaml
from prefect import Flow

from flows.config import load_config
from flows.pipelines import NAMES

REPO = Path(__file__).resolve().parent.parent


def test_deployments_resolve_to_flows_with_valid_parameters():
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    names = [d["name"] for d in spec["deployments"]]
    assert len(names) == len(set(names))
    covered = set()
    for d in spec["deployments"]:
        path, name = d["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        fl = getattr(module, name)
        assert isinstance(fl, Flow), d["name"]
        params = d.get("parameters", {})
        inspect.signature(fl.fn).bind(**params)  # raises on an unknown parameter
        pipeline = params.get("pipeline", fl.name)
        assert pipeline in NAMES, d["name"]
        load_config(pipeline, params.get("profile", "parity"), params.get("overrides") or [])
        covered.add(pipeline)
    assert covered == set(NAMES)  # every pipeline can be scheduled
