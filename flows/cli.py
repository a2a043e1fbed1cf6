"""`seqflow` command line: run or retrain a pipeline, move the champion, deploy, open the UI."""

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

from flows import dashboard
from flows.pipelines import ALIASES
from flows.pipelines import NAMES as PIPELINES
from tasks.runtime import signals

REPO = Path(__file__).resolve().parent.parent
CHOICES = (*PIPELINES, *ALIASES)  # a pipeline's name, or an alias (forecast = airline)


def _config(args: argparse.Namespace, extra: list[str] = ()):
    """Mirror + validated config, or None after printing why (exit 2)."""
    from flows.config import ConfigError, load_config
    from tasks.engine.settings import use_mirror

    try:
        use_mirror(args.mirror or os.environ.get("SEQFLOW_MIRROR"))
        if getattr(args, "profile_file", None):  # a tuning study's best trial (seqflow tune)
            from flows.tune import load_profile_file

            _, args.profile, tuned = load_profile_file(args.profile_file, args.pipeline)
            return load_config(args.pipeline, args.profile, [*tuned, *_sets(args), *extra])
        return load_config(args.pipeline, args.profile, [*_sets(args), *extra])
    except (ConfigError, FileNotFoundError) as err:
        print(f"seqflow: {err}", file=sys.stderr)
        return None


def _sets(args: argparse.Namespace) -> list[str]:
    """The --set overrides, after `--data SOURCE` (data.source; a path made absolute so that it
    stays valid from any folder: deployments, workers)."""
    data = getattr(args, "data", None)
    if data and Path(data).expanduser().exists():
        data = str(Path(data).expanduser().resolve())
    return [*([f"data.source={data}"] if data else []), *(args.set or [])]


def _source_ok(pipeline: str, config) -> bool:
    """Your own data read and its column mapping checked before any stage (else one line)."""
    from flows import pipelines
    from tasks.sources import SourceError

    try:
        pipelines.check_source(pipeline, config)
    except SourceError as err:
        print(f"seqflow: {err}", file=sys.stderr)
        return False
    return True


def _storage_line(err: BaseException) -> str | None:
    """One line for a run that stopped on a full, read-only or forbidden folder, else None."""
    from tasks.engine import storage
    from tasks.engine.settings import data_dir

    known = storage.explained(err, data_dir())
    return None if known is None else f"seqflow: {known}, then run the same command again"


DDP_PIPELINES = ("word2vec", "seq2seq", "charlm")


def interrupted(err: KeyboardInterrupt, pipeline: str, argv: list[str] | None) -> int:
    """One line for SIGINT/SIGTERM: what stopped, what was kept, how to resume."""
    from tasks.runtime.signals import Interrupted

    how = err.args[0] if isinstance(err, Interrupted) else "stopped by SIGINT"
    kept = getattr(err, "kept", None)
    again = "`seqflow " + " ".join(argv) + "`" if argv else "the same command"
    note = (
        f"checkpoint kept: {kept}; {again} resumes from it"
        if kept
        else ("no checkpoint had been written yet; " + again + " starts over")
    )
    print(f"seqflow: {pipeline} {how}; its MLflow run is marked KILLED; {note}", file=sys.stderr)
    return getattr(err, "exit_code", 130)


def _promote_flag(args: argparse.Namespace) -> dict:
    return {} if args.promote is None else {"promote": args.promote}


def _failed_run_lines(pipeline: str, since_ms: int) -> list[str]:
    """Where a failed run shows: its MLflow link and parity verdict, if it got that far."""
    from tasks.engine import tracking

    try:
        found = tracking.pipeline_runs(pipeline, limit=1)
    except Exception:  # the store itself is the fault: the error already says so
        return []
    if not found or found[0].info.start_time < since_ms:
        return []
    from flows.summary import parity_line

    run = found[0]
    return [f"MLflow run  {run.info.run_name} ({run.info.status}): "
            f"{tracking.run_link(run.info.run_id)}", parity_line(run)]  # fmt: skip


def cmd_run(args: argparse.Namespace) -> int:
    import time

    from flows import pipelines

    if args.nproc is not None and args.nproc < 1:
        print(f"seqflow: --nproc {args.nproc}: give 1 or more DDP ranks (or leave it out)",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.nproc and args.nproc > 1 and args.pipeline not in DDP_PIPELINES:
        print(f"seqflow: --nproc: DDP training is built for {', '.join(DDP_PIPELINES)}; run "
              f"{args.pipeline} without --nproc", file=sys.stderr)  # fmt: skip
        return 2
    if args.promote is not None and args.pipeline == "fundamentals":
        print("seqflow: fundamentals registers no model: run it without --promote/--no-promote",
              file=sys.stderr)  # fmt: skip
        return 2
    config = _config(args, [f"train.nproc={args.nproc}"] if args.nproc else [])
    if config is None or not _source_ok(args.pipeline, config):
        return 2
    from flows.runners import with_runner

    spec = pipelines.get(args.pipeline)
    flow = with_runner(spec.flow, args.runner, args.dask_address, args.dask_workers)
    started = time.time()
    try:
        with signals.handled():
            run_id = flow(config=config, **_promote_flag(args))
    except KeyboardInterrupt as err:  # SIGINT/SIGTERM: the runs are KILLED, checkpoints kept
        return interrupted(err, args.pipeline, args.argv)
    except Exception as err:  # the flow's logs hold the traceback; the run is marked FAILED
        if line := _storage_line(err):  # its temporary files are gone; nothing half-written
            print(line, file=sys.stderr)
            return 1
        print(f"seqflow: {args.pipeline} failed: {type(err).__name__}: {err}", file=sys.stderr)
        for line in _failed_run_lines(args.pipeline, int(started * 1000)):
            print(line, file=sys.stderr)
        return 1
    from flows.summary import lines

    print("\n".join(lines(args.pipeline, run_id, spec.metric, time.time() - started)))
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    """An Optuna study (flows/tune.py); one line per problem before any trial (exit 2)."""
    from flows.space import read_space
    from flows.tune import TuneError, module_of

    if args.trials < 1 or args.parallel < 1:
        print("seqflow: --trials and --parallel take 1 or more", file=sys.stderr)
        return 2
    try:
        module_of(args.pipeline)
        space = read_space(args.space) if args.space else None
        if space is not None:  # its keys and bounds, named with the file
            from flows.space import distributions

            distributions(args.pipeline, args.profile, _sets(args), space, f"--space {args.space}")
    except (TuneError, ValueError) as err:
        print(f"seqflow: {err}", file=sys.stderr)
        return 2
    config = _config(args)
    if config is None or not _source_ok(args.pipeline, config):
        return 2
    from flows.runners import dask_runner
    from flows.tune import tune

    flow = tune
    if args.runner == "dask":
        flow = tune.with_options(task_runner=dask_runner(args.dask_address, args.parallel))
    else:
        from prefect.task_runners import ThreadPoolTaskRunner

        flow = tune.with_options(task_runner=ThreadPoolTaskRunner(max_workers=args.parallel))
    try:
        with signals.handled():
            out = flow(pipeline=args.pipeline, profile=args.profile, trials=args.trials,
                       parallel=args.parallel, space=space, overrides=_sets(args),
                       resume=args.resume, study=args.study, final=args.final,
                       pruner=args.pruner, prune_after=args.prune_after,
                       seed=args.seed)  # fmt: skip
    except KeyboardInterrupt:
        print(f"seqflow: tune {args.pipeline} stopped; finished trials are kept: `seqflow "
              f"{' '.join(args.argv)} --resume` continues the study", file=sys.stderr)  # fmt: skip
        return 130
    except (TuneError, ValueError) as err:
        print(f"seqflow: {err}", file=sys.stderr)
        return 2
    from tasks.engine import tracking

    t = out["trials"]
    print(f"study       {out['study']}  ({out['seconds']:.0f} s)")
    print(f"trials      {t['complete']} complete, {t['pruned']} pruned, {t['fail']} failed")
    print(f"MLflow      {tracking.run_link(out['parent_run'])}")
    if out.get("best"):
        b = out["best"]
        value = next(v for k, v in b.items() if k not in ("trial", "params"))
        shown = ", ".join(f"{k} = {v:.4g}" if isinstance(v, float) else f"{k} = {v}"
                          for k, v in b["params"].items())  # fmt: skip
        print(f"best        trial {b['trial']}: {value:.4g} on validation ({shown})")
        print(f"profile     {out['profile_file']}  (seqflow run {args.pipeline} "
              f"--profile-file {out['profile_file']})")  # fmt: skip
        test = {k: v for k, v in out.items() if k.startswith("best_trial_") and v is not None}
        for k, v in test.items():
            print(f"test        {k[len('best_trial_'):]} {v:.4g} (the best trial's profile, run "
                  f"once: {tracking.run_link(out['final_run'])})")  # fmt: skip
    else:
        print("best        none: no trial completed (see the failed trials' reasons in MLflow)")
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    config = _config(args)  # validate before any work
    if config is None or not _source_ok(args.pipeline, config):
        return 2
    from flows.retrain import retrain

    try:
        with signals.handled():
            outcome = retrain(
                pipeline=args.pipeline,
                profile=args.profile,
                overrides=_sets(args),
                warm_start=args.warm_start,
                **_promote_flag(args),
            )
    except KeyboardInterrupt as err:
        return interrupted(err, f"retrain {args.pipeline}", args.argv)
    except Exception as err:
        if line := _storage_line(err):
            print(line, file=sys.stderr)
            return 1
        print(
            f"seqflow: retrain {args.pipeline} failed: {type(err).__name__}: {err}", file=sys.stderr
        )
        return 1
    print(json.dumps(outcome, indent=2))
    if run_id := outcome.get("challenger_run"):
        from flows.pipelines import get
        from flows.summary import lines

        print("\n".join(lines(args.pipeline, run_id, get(args.pipeline).metric, 0.0)[1:]))
    print(f"retrain {args.pipeline}: {outcome['decision']}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Move alias champion to --version, or one step back with --rollback; both are recorded."""
    import mlflow

    from flows.pipelines import get
    from tasks.engine import tracking

    metric = get(args.pipeline).metric
    version, reason = args.version, f"manual: seqflow promote --version {args.version}"
    if args.rollback:
        version = tracking.rollback_target(tracking.alias_history(args.pipeline))
        if version is None:
            print(f"seqflow: {args.pipeline}: nothing to roll back to (no earlier champion in "
                  f"`seqflow history {args.pipeline}`)", file=sys.stderr)  # fmt: skip
            return 2
        reason = "rollback: seqflow promote --rollback"
    try:
        move = tracking.promote(args.pipeline, version, reason, metric, rollback=args.rollback)
    except mlflow.exceptions.MlflowException as err:
        print(
            f"seqflow: cannot promote {args.pipeline} version {version}: {err.message}\n"
            f"  list the versions in the MLflow UI (seqflow ui) or with `seqflow history "
            f"{args.pipeline}`",
            file=sys.stderr,
        )
        return 2
    print(f"{args.pipeline}: alias champion -> version {version} (was {move['from']})")
    return 0


def _score(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def cmd_history(args: argparse.Namespace) -> int:
    """Every move of alias champion: when, from and to, scores, data, reason."""
    from tasks.engine import tracking

    moves = tracking.alias_history(args.pipeline)
    if moves:
        print(f"{'when':<24} {'from':>4} -> {'to':<4} {'metric':<16} {'from score':>10} "
              f"{'to score':>10}  {'from data':<12} {'to data':<12} reason")  # fmt: skip
    for m in moves:
        print(f"{m['at']:<24} {m['from'] or '-':>4} -> {m['to']:<4} {m['metric'] or '-':<16} "
              f"{_score(m['from_score']):>10} {_score(m['to_score']):>10}  "
              f"{(m['from_data'] or '-')[:12]:<12} {(m['to_data'] or '-')[:12]:<12} "
              f"{m['reason']}")  # fmt: skip
    champ = tracking.champion(args.pipeline)
    print(f"champion now: version {champ.version}" if champ else "no champion yet")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    """Verify and copy new data into data/incoming/<pipeline>/, then emit the arrival event."""
    from flows.ingest import emit_arrival, ingest

    try:
        arrived = ingest(args.pipeline, [Path(f) for f in args.files], _sets(args))
    except Exception as err:  # our errors name the file and the fix; nothing was copied
        print(f"seqflow: ingest {args.pipeline}: {err}", file=sys.stderr)
        return 2
    for a in arrived:
        added = ""
        if "new_rows" in a:
            what = "pairs" if args.pipeline == "seq2seq" else "rows"
            added = f", {a['new_rows']} new {what}, {a.get('duplicate_rows', 0)} duplicate {what}"
        added += "".join(f", {note}" for note in a.get("notes", []))  # e.g. a header skipped
        print(f"{args.pipeline}: {a['name']} ({a['bytes']:,} bytes, sha256 {a['sha256'][:12]}"
              f"{added})")  # fmt: skip
    event = emit_arrival(args.pipeline, arrived)
    print(f"event seqflow.data.arrived {event.id if event else '(no Prefect API: not sent)'}")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    """For a run (the latest by default): each stage, cached or ran, and why."""
    from flows.explain import explain_run

    try:
        run_id, lines = explain_run(args.pipeline, args.run)
    except LookupError as err:
        print(f"seqflow: {err}", file=sys.stderr)
        return 1
    print(f"{args.pipeline} run {run_id}; {lines[0]}")  # what it read, then each stage
    for line in lines[1:]:
        print(f"  {line}")
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    """Create the work pool if missing, then `prefect --no-prompt deploy --all`."""
    prefect = shutil.which("prefect") or str(Path(sys.executable).parent / "prefect")
    env = dict(os.environ, SEQFLOW_HOME=os.environ.get("SEQFLOW_HOME", str(REPO)))
    pools = subprocess.run([prefect, "work-pool", "inspect", args.pool], env=env,
                           capture_output=True, text=True)  # fmt: skip
    if pools.returncode != 0:
        made = subprocess.run([prefect, "work-pool", "create", args.pool, "--type", "process"],
                              env=env)  # fmt: skip
        if made.returncode != 0:
            return made.returncode
    return subprocess.call([prefect, "--no-prompt", "deploy", "--all"], cwd=REPO, env=env)


def cmd_translate(args: argparse.Namespace) -> int:
    """Source -> target language (the course: German -> English) with the seq2seq model behind
    alias champion (or --version), in the languages it was trained on: one
    output line per input (sentence arguments, then the lines of --file; `-` = stdin), in
    order, a blank line for a blank input."""
    sentences = list(args.text)
    labels = [f"argument {i}" for i in range(1, len(sentences) + 1)]
    if args.file:
        name = "stdin" if args.file == "-" else args.file
        try:
            text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as err:
            print(f"seqflow: cannot read {name}: {err}", file=sys.stderr)
            return 2
        from flows.translator import input_lines

        lines = input_lines(text)  # \n only: U+2028 and the like stay inside their line
        sentences += lines
        labels += [f"{name} line {i}" for i in range(1, len(lines) + 1)]
    if not args.text and not args.file:
        print("seqflow: nothing to translate: give sentences or --file PATH (- = stdin)",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        with warnings.catch_warnings():  # MLflow's coloured type-hint advice is not for users
            warnings.showwarning = lambda *a, **k: None  # MLflow forces its own filter "once"
            from flows.seq2seq import load_translator

            model, version = load_translator(args.version)
    except LookupError as err:
        print(f"seqflow: {err}", file=sys.stderr)
        return 1
    out, cut = model.translate(sentences, beam=args.beam)
    for i, message in cut:
        print(f"seqflow: {labels[i]}: {message}", file=sys.stderr)
    for text in out:
        print(text)
    langs = getattr(model, "languages", None) or {"src": "de", "trg": "en"}
    print(f"(seq2seq version {version}) {langs['src']} -> {langs['trg']}", file=sys.stderr)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The champion (or --version) behind MLflow's scoring server, in the foreground."""
    from flows.serve import ServeError, serve

    try:
        serve(args.pipeline, args.version, args.host, args.port)  # returns only on error
    except ServeError as err:
        print(f"seqflow: serve {args.pipeline}: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the mlflow script itself could not be started
        print(f"seqflow: serve {args.pipeline}: cannot start MLflow's scoring server: {err}",
              file=sys.stderr)  # fmt: skip
        return 1
    return 1


def cmd_log_model(args: argparse.Namespace) -> int:
    """Log a kept checkpoint's model to MLflow (after a run that could not log it)."""
    from flows.recover import log_checkpoint

    try:
        done = log_checkpoint(args.pipeline, Path(args.checkpoint))
    except ValueError as err:
        print(f"seqflow: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # MLflow still unreachable: the checkpoint stays where it is
        print(f"seqflow: log-model failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    from tasks.engine import tracking

    print(f"logged {args.checkpoint} ({done['epochs']} of {done['planned_epochs']} epochs) as "
          f"MLflow run {done['run_id']}, model {args.pipeline} version {done['version']} at "
          f"{tracking.tracking_uri()}")  # fmt: skip
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    config = _config(args)
    if config is None:
        return 2
    from flows.config import describe

    print(f"# {args.pipeline}, profile {config.profile} (default profile: {DEFAULT_PROFILE})")
    print("\n".join(describe(config)))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from tasks.engine import tracking

    uri = tracking.tracking_uri()
    print(f"MLflow UI for {tracking.redact(uri)} on http://127.0.0.1:{args.port}")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", "127.0.0.1", "--port", str(args.port)]  # fmt: skip
    return subprocess.call(cmd)


DEFAULT_PROFILE = "quick"  # the same for run, retrain and config show: fast, a model to try


def _profiles_help() -> str:
    from flows.config import PROFILES

    each = "; ".join(f"{name}: {' | '.join(PROFILES[name])}" for name in PIPELINES)
    return f"default: {DEFAULT_PROFILE}. Profiles per pipeline: {each}"


def _pipeline_args(p: argparse.ArgumentParser, promote: bool = True) -> None:
    p.add_argument(
        "pipeline",
        choices=CHOICES,
        metavar="PIPELINE",
        help=f"one of: {', '.join(PIPELINES)} (forecast = airline)",
    )
    p.add_argument("--profile", default=DEFAULT_PROFILE, help=_profiles_help())
    if promote:
        p.add_argument("--promote", action=argparse.BooleanOptionalAction, default=None,
                       help="make the new model champion (--promote) or keep the current one "
                       "(--no-promote) whatever the scores; default: the champion policy "
                       "(README, Champion)")  # fmt: skip
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set train.epochs=1 (repeatable)",
    )
    p.add_argument(
        "--data",
        metavar="SOURCE",
        help="your own data (data.source): a file, a glob, a dataset folder or a Hub id",
    )
    p.add_argument(
        "--mirror",
        metavar="PATH",
        help="read datasets from a local folder laid out like shared/datasets/",
    )


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("seqflow")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="seqflow", description=__doc__)
    p.add_argument("--version", action="version", version=f"seqflow {version()}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a pipeline end to end")
    _pipeline_args(run)
    run.add_argument("--runner", choices=("sequential", "dask"), default="sequential",
                     help="dask: preprocessing shards run on a Dask cluster")  # fmt: skip
    run.add_argument("--dask-address", metavar="ADDR",
                     help="an existing Dask scheduler (default: start a LocalCluster)")  # fmt: skip
    run.add_argument("--dask-workers", type=int, metavar="N", help="LocalCluster workers (2)")
    run.add_argument("--nproc", type=int, metavar="N",
                     help="DDP ranks: word2vec, seq2seq, charlm (= train.nproc)")  # fmt: skip
    run.set_defaults(func=cmd_run)
    run.add_argument(
        "--profile-file",
        metavar="FILE",
        help="a profile file `seqflow tune` wrote (its best trial's settings)",
    )
    tu = sub.add_parser("tune", help="an Optuna hyperparameter study, trials as MLflow child runs")
    _pipeline_args(tu, promote=False)
    tu.add_argument("--trials", type=int, required=True, metavar="N", help="trials in the study")
    tu.add_argument("--space", metavar="FILE", help="a YAML/JSON search space (default: the "
                    "pipeline's, in flows/config/<pipeline>.py)")  # fmt: skip
    tu.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="K",
        help="trials at a time, each in its own process (default 1)",
    )
    tu.add_argument(
        "--runner",
        choices=("threads", "dask"),
        default="threads",
        help="dask: the trials run on a Dask cluster",
    )
    tu.add_argument("--dask-address", metavar="ADDR", help="an existing Dask scheduler")
    tu.add_argument("--resume", action="store_true", help="continue the interrupted study")
    tu.add_argument(
        "--study",
        metavar="NAME",
        help="the study's name (default: pipeline-profile-<hash of space and --set>)",
    )
    tu.add_argument("--final", action=argparse.BooleanOptionalAction, default=True,
                    help="run the best trial's profile once and report its test score "
                    "(default: yes)")  # fmt: skip
    tu.add_argument(
        "--pruner",
        choices=("median", "none"),
        default="median",
        help="stop hopeless trials at an epoch boundary (default: median)",
    )
    tu.add_argument("--prune-after", type=int, metavar="N",
                    help="trials finished before the pruner compares (Optuna's n_startup_trials; "
                    "default: a quarter of --trials, 1 to 5)")  # fmt: skip
    tu.add_argument("--seed", type=int, default=2023, help="the sampler's seed")
    tu.set_defaults(func=cmd_tune)
    re = sub.add_parser("retrain", help="retrain on new data in data/incoming/<pipeline>/")
    _pipeline_args(re)
    re.add_argument("--warm-start", action="store_true", help="start from the champion's vectors")
    re.set_defaults(func=cmd_retrain)
    pr = sub.add_parser("promote", help="point alias champion at a model version (rollback)")
    pr.add_argument(
        "pipeline", choices=CHOICES, metavar="PIPELINE", help="whose alias champion moves"
    )
    group = pr.add_mutually_exclusive_group(required=True)
    group.add_argument("--version", type=int, help="registered model version")
    group.add_argument("--rollback", action="store_true", help="back to the previous champion")
    group.add_argument("--history", action="store_true", help="list the alias moves")
    pr.set_defaults(func=lambda a: cmd_history(a) if a.history else cmd_promote(a))
    hi = sub.add_parser("history", help="every move of alias champion, with scores and data")
    hi.add_argument("pipeline", choices=CHOICES, metavar="PIPELINE", help="whose champion history")
    hi.set_defaults(func=cmd_history)
    ing = sub.add_parser("ingest", help="add new data files and trigger the retrain deployment")
    ing.add_argument("pipeline", choices=("word2vec", "charlm", "seq2seq"),
                     help="word2vec, charlm or seq2seq")  # fmt: skip
    ing.add_argument("files", nargs="+", help="CSV files (word2vec), UTF-8 .txt (charlm) or "
                     "de<TAB>en .tsv (seq2seq)")  # fmt: skip
    ing.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="seq2seq: the config whose train split new pairs are checked against "
                     "(as retrain will read it, e.g. data.limit_train=N); your own data: its "
                     "column mapping")  # fmt: skip
    ing.add_argument("--data", metavar="SOURCE", help="your own data (data.source): new files "
                     "are checked against its format, columns and rows")  # fmt: skip
    ing.set_defaults(func=cmd_ingest)
    ex = sub.add_parser("explain", help="why each stage of a run ran or came from cache")
    ex.add_argument("pipeline", choices=CHOICES, metavar="PIPELINE", help="whose run to explain")
    ex.add_argument("--run", metavar="RUN_ID", help="an MLflow run id (default: the latest)")
    ex.set_defaults(func=cmd_explain)
    de = sub.add_parser("deploy", help="register prefect.yaml's deployments with the server")
    de.add_argument("--pool", default="seqflow", help="process work pool (created if missing)")
    de.set_defaults(func=cmd_deploy)
    tr = sub.add_parser("translate", help="translate with the seq2seq champion (its language pair)")
    tr.add_argument("text", nargs="*", help="sentences (each one argument)")
    tr.add_argument("--file", help="a UTF-8 file, one sentence per line (- = stdin)")
    tr.add_argument("--version", type=int, help="a registered version instead of the champion")
    tr.add_argument("--beam", type=int, help="beam width (1 = greedy; default: the model's)")
    tr.set_defaults(func=cmd_translate)
    sv = sub.add_parser("serve", help="serve the champion over HTTP (MLflow's scoring server)")
    sv.add_argument("pipeline", choices=CHOICES, metavar="PIPELINE",
                    help="whose model: word2vec, seq2seq, charlm or airline")  # fmt: skip
    sv.add_argument("--version", type=int, help="a registered version instead of the champion")
    sv.add_argument("--port", type=int, default=5001, help="default: 5001")
    sv.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)")
    sv.set_defaults(func=cmd_serve)
    lm = sub.add_parser("log-model", help="log a kept checkpoint's model to MLflow")
    lm.add_argument(
        "pipeline", choices=CHOICES, metavar="PIPELINE", help="the checkpoint's pipeline"
    )
    lm.add_argument("--checkpoint", required=True, help="the .pt file a failed run named")
    lm.set_defaults(func=cmd_log_model)
    co = sub.add_parser("config", help="the resolved config of a pipeline, key by key")
    co_sub = co.add_subparsers(dest="action", required=True)
    show = co_sub.add_parser("show", help="print the resolved config with each key's description")
    _pipeline_args(show, promote=False)
    show.set_defaults(func=cmd_config_show)
    ui = sub.add_parser("ui", help="start the MLflow UI on 127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(func=cmd_ui)
    dashboard.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # MLflow's advice on each pyfunc class defined (type hints on predict) is not the user's
    warnings.filterwarnings("ignore", message=".*Add type hints to the `predict` method")
    dashboard.configure_prefect()  # before Prefect reads its settings: the dashboard, if up
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    args.argv = argv  # the command as typed, to say how to resume it
    if getattr(args, "pipeline", None) in ALIASES:  # forecast -> airline, before anything reads it
        args.pipeline = ALIASES[args.pipeline]
    os.environ["SEQFLOW_COMMAND"] = shlex.join(["seqflow", *argv])  # a tag of the MLflow run
    return dashboard.run_command(args)  # args.func(args); a stuck temporary server: one line


if __name__ == "__main__":
    sys.exit(main())
