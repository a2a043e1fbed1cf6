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


def test_docker_and_kubernetes_job_templates_fit_prefects_workers():
    """The remote pool templates use only variables of Prefect's own docker and kubernetes
    base job templates, with valid values, and carry the servers' addresses to the runs."""
    import json
    import re

    import jsonschema
    import prefect.server.api

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    views = Path(prefect.server.api.__file__).parent / "collections_data" / "views"
    workers = json.loads((views / "aggregate-worker-metadata.json").read_text())
    env = {
        "SEQFLOW_IMAGE": "seqflow:latest",
        "PREFECT_API_URL": "http://prefect:4200/api",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        "SEQFLOW_MIRROR": "/srv/datasets",
    }
    kinds = {"docker_pool": ("prefect-docker", "docker"),
             "kubernetes_pool": ("prefect-kubernetes", "kubernetes")}  # fmt: skip
    for key, (collection, kind) in kinds.items():
        pool = spec["definitions"][key]
        rendered = re.sub(r"\{\{ \$(\w+) \}\}", lambda m: env[m.group(1)],
                          json.dumps(pool["job_variables"]))  # fmt: skip
        job = json.loads(rendered)
        schema = workers[collection][kind]["default_base_job_configuration"]["variables"]
        assert set(job) <= set(schema["properties"]), key
        jsonschema.validate(job, schema)
        assert job["image"] == "seqflow:latest"
        assert job["env"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000", key
        assert job["env"]["PREFECT_API_URL"] == "http://prefect:4200/api", key
    pull = spec["definitions"]["image_pull"][0]["prefect.deployments.steps.set_working_directory"]
    assert (
        pull["directory"]
        == spec["definitions"]["docker_pool"]["job_variables"]["env"]["SEQFLOW_HOME"]
    )
    pools = {d["work_pool"]["name"] for d in spec["deployments"]}
    assert pools == {"seqflow"}  # `seqflow deploy` creates only the process pool
