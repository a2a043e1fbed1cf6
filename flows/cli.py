"""`seqflow` command line: run a pipeline, open the MLflow UI."""

import argparse
import os
import subprocess
import sys

PIPELINES = ("word2vec",)


def _flow(pipeline: str):
    if pipeline == "word2vec":
        from flows.word2vec import word2vec

        return word2vec
    raise SystemExit(f"unknown pipeline {pipeline!r}; known: {', '.join(PIPELINES)}")


def cmd_run(args: argparse.Namespace) -> int:
    from flows.config import ConfigError, load_config
    from tasks.settings import use_mirror

    try:
        use_mirror(args.mirror or os.environ.get("SEQFLOW_MIRROR"))
        config = load_config(args.pipeline, args.profile, args.set or [])
    except (ConfigError, FileNotFoundError) as err:
        print(f"seqflow: {err}", file=sys.stderr)
        return 2
    from tasks import tracking

    flow = _flow(args.pipeline)
    try:
        run_id = flow(config=config)
    except Exception as err:  # the flow's logs hold the traceback; the run is marked FAILED
        print(f"seqflow: {args.pipeline} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    run = tracking.get_run(run_id)
    print(
        f"MLflow run {run_id} ({run.info.status}) in experiment {args.pipeline} at "
        f"{tracking.tracking_uri()}"
    )
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from tasks import tracking

    uri = tracking.tracking_uri()
    print(f"MLflow UI for {uri} on http://127.0.0.1:{args.port}")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(args.port),
    ]
    return subprocess.call(cmd)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seqflow", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a pipeline end to end")
    run.add_argument("pipeline", choices=PIPELINES)
    run.add_argument("--profile", default="parity", help="parity | quick | best")
    run.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set train.epochs=1 (repeatable)",
    )
    run.add_argument(
        "--mirror",
        metavar="PATH",
        help="read datasets from a local folder laid out like shared/datasets/",
    )
    run.set_defaults(func=cmd_run)
    ui = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
