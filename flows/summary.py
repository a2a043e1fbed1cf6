"""The lines a run ends with: where to see it, what it scored, which model now serves."""

from tasks.engine import tracking

# metrics worth a line, after the primary one (the first of these a run logged)
KEY_PREFIXES = ("test_", "val_", "best_", "downstream", "final_")


def _value(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def key_metrics(metrics: dict, primary: str, limit: int = 5) -> list[str]:
    # the primary metric, or its per-model values (fundamentals: test_loss.<kind>)
    names = [primary] if primary in metrics else sorted(k for k in metrics
                                                       if k.startswith(primary + "."))  # fmt: skip
    names += sorted(k for k in metrics if k.startswith(KEY_PREFIXES) and k not in names)
    return [f"{k} {_value(metrics[k])}" for k in names[:limit]]


def parity_line(run) -> str:
    failures = tracking.counts(run).get("parity_failures")
    if failures is None and run.data.tags.get("data_source"):
        return "parity      not checked (your own data: the parity figures are the course's)"
    if failures is None:
        return "parity      not checked (only the parity profile is)"
    if failures:
        return f"PARITY FAILED: {int(failures)} check(s) failed (see parity.md in the run)"
    return "parity      pass"


def stages_line(tags: dict) -> str:
    cached = {k.split(".")[1]: v == "True" for k, v in tags.items()
              if k.startswith("stage.") and k.endswith(".cached")}  # fmt: skip
    hits = [s for s, c in cached.items() if c]
    ran = [s for s, c in cached.items() if not c]
    parts = ([f"ran {', '.join(ran)}"] if ran else []) + (
        [f"from cache {', '.join(hits)}"] if hits else []
    )
    return "stages      " + ("; ".join(parts) or "none logged")


def lines(pipeline: str, run_id: str, metric: str, wall_s: float) -> list[str]:
    """The end-of-run summary of MLflow run `run_id` (the model line last)."""
    run = tracking.get_run(run_id)
    tags, info = run.data.tags, run.info
    out = [
        f"{pipeline} {tags.get('profile', '')}: {info.status} in {wall_s:.1f} s",
        f"MLflow run  {info.run_name} ({run_id})",
        f"  UI        {tracking.run_link(run_id)}",
        "metrics     " + (" · ".join(key_metrics(run.data.metrics, metric)) or "none"),
        stages_line(tags),
        parity_line(run),
    ]
    if same := tags.get("identical_to"):
        out.append(f"identical   to run {same}: same config, data and code")
    if reg := tags.get("registered_model"):
        name, version = reg.split("/")
        line = tags.get("champion.line", f"version {version} registered")
        out.append(f"model       {name} {line}")
    else:
        out.append("model       none registered")
    return out
