"""Run records: a Prefect markdown artifact per flow run, beside the MLflow run."""

from prefect.artifacts import create_markdown_artifact

from tasks.engine.stage import StageOutput


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def pipeline_record(
    pipeline: str, profile: str, run_id: str, link: str, stages: list[StageOutput], metrics: dict
) -> str:
    """What ran, what came from cache, the key metrics and the MLflow link, as markdown."""
    values = [(k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in metrics.items()]
    lines = [
        f"# {pipeline} ({profile})",
        "",
        f"MLflow run [`{run_id}`]({link})",
        "",
        f"## Stages ({sum(s.cached for s in stages)} of {len(stages)} from cache)",
        "",
        *_table(
            ("stage", "cached", "key"),
            [(s.stage, "yes" if s.cached else "no", f"`{s.key[:12]}`") for s in stages],
        ),
        "",
        "## Stage keys",
        "",
        *_table(
            ("stage", "inputs", "parameters", "code", "libraries"), [_parts_row(s) for s in stages]
        ),  # fmt: skip
        "",
        "## Metrics",
        "",
        *_table(("metric", "value"), values),
    ]
    return "\n".join(lines)


def _parts_row(s: StageOutput) -> tuple:
    p = s.parts
    inputs = ", ".join(f"{k} `{str(v)[:8]}`" for k, v in p.get("inputs", {}).items())
    params = ", ".join(f"{k}={v}" for k, v in p.get("params", {}).items())
    code = ", ".join(f"{f} `{h[:8]}`" for f, h in p.get("code", {}).items())
    libs = ", ".join(f"{k} {v}" for k, v in p.get("libs", {}).items())
    return s.stage, inputs, params.replace("|", "\\|"), code, libs


def publish(key: str, markdown: str, description: str) -> None:
    """Attach the markdown to the current Prefect flow run (key: lowercase, digits, dashes)."""
    create_markdown_artifact(key=key, markdown=markdown, description=description)
