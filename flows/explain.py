"""`seqflow explain`: why each stage of a logged run ran, from the lineage the runs logged to
MLflow (tasks/engine/lineage.py compares the parts; tasks/engine/tracking.py reads the runs)."""

from tasks.engine import lineage, tracking


def explain_run(pipeline: str, run_id: str | None = None) -> tuple[str, list[str]]:
    """(run id, explain lines) for a pipeline run (the latest by default), from the lineage the
    runs logged to MLflow."""
    if run_id is None:
        runs = tracking.pipeline_runs(pipeline, limit=1)
        if not runs:
            raise LookupError(f"no {pipeline} runs in {tracking.tracking_uri()}")
        run_id = runs[0].info.run_id
    run = tracking.get_run(run_id)
    stages = tracking.lineage(run_id)
    if stages is None:
        raise LookupError(f"run {run_id} logged no lineage.json (a run from before lineage, or "
                          "one that failed before its stages finished)")  # fmt: skip
    earlier = []
    for r in tracking.pipeline_runs(pipeline, before_ms=run.info.start_time):
        entries = tracking.lineage(r.info.run_id)
        if entries is not None:
            earlier.append((r.info.run_id, entries))
    return run_id, [data_line(run, stages), *lineage.explain(stages, earlier)]


def data_line(run, stages: list[dict]) -> str:
    """What the run read: your own source's identity (kind, name, revision, mapping), or the
    course's dataset; and the data fingerprint."""
    fp = run.data.tags.get("data_fingerprint", "unknown")[:12]
    ingest = next((s for s in stages if s["stage"] == "ingest"), {})
    ident = ingest.get("parts", {}).get("params", {}).get("identity")
    if not ident:
        return f"data: the course's dataset (fingerprint {fp})"
    rev = f" at revision {ident['revision']}" if ident.get("revision") else ""
    files = f", {len(ident['files'])} file(s)" if ident.get("files") else ""
    cols = ", ".join(f"{k}={v}" for k, v in ident.get("mapping", {}).items())
    return f"data: {ident['kind']} {ident['name']}{rev}{files}; columns {cols} (fingerprint {fp})"
