"""Retrain a pipeline when new data arrives; promote the challenger only if it is better.

New data: CSV files in data/incoming/<pipeline>/ (the source's format), appended to the source.
The champion is the registered model version behind MLflow alias `champion`.
"""

from prefect import flow, get_run_logger

from flows import champion, dashboard, pipelines
from flows.config import load_config
from tasks.engine import records, tracking


def _record(pipeline: str, outcome: dict) -> str:
    lines = [f"# {pipeline} retrain: {outcome['decision']}", ""]
    lines += [f"- **{k}**: {v}" for k, v in outcome.items() if k != "decision"]
    return "\n".join(lines)


def check_incoming(pipeline: str, config) -> list[str]:
    """The incoming files' rows checked as `seqflow ingest` checks them (IncomingError /
    TextFormatError name each fault); returns the files that add nothing, with why."""
    from flows.ingest import SUFFIX
    from tasks.data import incoming_files
    from tasks.incoming import content_fingerprint

    if pipeline not in SUFFIX:
        return []
    if getattr(config.data, "own", False):  # your own data: its files checked by its mapping
        from flows.pipelines import check_source

        check_source(pipeline, config)  # each incoming file read and checked; duplicates dropped
        if pipeline == "charlm":  # and a text against the alphabet derived from the source
            from flows.charlm import incoming_check

            check_text = incoming_check(config)
            for path in incoming_files(pipeline, SUFFIX[pipeline]):
                check_text(path)
        return []
    if pipeline == "seq2seq":
        from flows.seq2seq import incoming_report

        reports, what = incoming_report(config).files, "pair"
    else:
        files = incoming_files(pipeline, SUFFIX[pipeline])
        if pipeline == "charlm":  # the course's alphabet, or your own text's
            from flows.charlm import incoming_check

            check_text = incoming_check(config)
            for path in files:
                check_text(path)
        d = config.data
        limit = getattr(d, "limit_rows", None)
        _, reports = content_fingerprint(files, d.dataset, d.file, limit)
        what = "row"
    return [f"incoming {r.name} adds nothing: every {what} is already in "
            f"{', '.join(r.duplicate_of)}" for r in reports if r.rows and not r.new]  # fmt: skip


@flow(name="retrain", flow_run_name=dashboard.retrain_run_name)
def retrain(
    pipeline: str = "word2vec",
    profile: str = "quick",
    overrides: list[str] | None = None,
    warm_start: bool = False,
    trigger: str | None = None,
    promote: bool | None = None,
) -> dict:
    """Returns the outcome: decision, versions, scores, data fingerprints. `trigger`: what
    started it, when an event did (the deployment trigger passes the event's note)."""
    logger = get_run_logger()
    if trigger:
        logger.info("triggered by: %s", trigger)
    sets = [*(overrides or [])]
    if "incoming" in type(load_config(pipeline, profile, sets).data).model_fields:
        sets.append("data.incoming=true")  # pipelines that take dropped-in files
    if warm_start:
        sets.append("train.warm_start=true")
    config = load_config(pipeline, profile, sets)
    duplicates = check_incoming(pipeline, config)  # every bad row named before any stage/run
    # one retrain per pipeline at a time, from its check to its promotion: a second one waits,
    # then finds the first one's data already trained on ("no new data")
    waiting = f"another retrain of {pipeline} is running; waiting"
    with champion.one_at_a_time(pipeline, waiting):
        return _check_and_train(pipeline, config, duplicates, trigger, promote)


def _check_and_train(pipeline: str, config, duplicates: list[str], trigger, promote) -> dict:
    logger = get_run_logger()
    spec = pipelines.get(pipeline)
    data_fp = spec.fingerprint(config)
    champ = tracking.champion(pipeline)
    champ_fp = tracking.get_run(champ.run_id).data.tags.get("data_fingerprint") if champ else None
    outcome: dict = {"data_fingerprint": data_fp, "champion_data_fingerprint": champ_fp}
    if duplicates:
        outcome["duplicate_files"] = duplicates
    if trigger:
        outcome["trigger"] = trigger
    if champ is not None and champ_fp == data_fp:
        logger.info(
            "no new data: %s champion (version %s) was trained on data %s; nothing to do%s",
            pipeline, champ.version, data_fp,
            "".join(f"; {d}" for d in duplicates),
        )  # fmt: skip
        outcome = {"decision": "no new data", "champion_version": int(champ.version)} | outcome
        records.publish(f"{pipeline}-retrain", _record(pipeline, outcome), "retrain decision")
        return outcome

    tried = [
        r
        for r in tracking.runs_with_tag(pipeline, "data_fingerprint", data_fp)
        if r.data.tags.get("retrain.decision") == "kept champion"
    ]
    if champ is not None and tried:
        logger.info(
            "no new data: a challenger on data %s (run %s) already lost to champion version %s",
            data_fp, tried[0].info.run_id, champ.version,
        )  # fmt: skip
        outcome = {"decision": "no new data", "champion_version": int(champ.version),
                   "already_tried": tried[0].info.run_id} | outcome  # fmt: skip
        records.publish(f"{pipeline}-retrain", _record(pipeline, outcome), "retrain decision")
        return outcome

    logger.info("new data %s (champion's: %s): training a challenger", data_fp, champ_fp)
    token = champion.CALLER.set("retrain")
    try:
        run_id = spec.flow(config=config, promote=promote)  # the flow applies flows/champion.py
    finally:
        champion.CALLER.reset(token)
    challenger = tracking.model_version_of_run(pipeline, run_id)
    outcome["challenger_version"] = int(challenger.version)
    outcome["challenger_run"] = run_id
    tags = tracking.get_run(run_id).data.tags
    outcome["decision"] = tags.get("champion.decision", "not decided")
    outcome["line"] = tags.get("champion.line", "")
    if (before := tags.get("champion.before")) not in (None, "none"):
        outcome["champion_version"] = int(before)
    for key in ("challenger_score", "champion_score"):
        if (value := tags.get(f"champion.{key}")) is not None:
            outcome[key] = float(value)
    if "champion_score" in outcome:
        outcome["metric"] = spec.metric
        scores = {f"retrain.{k}": outcome[k] for k in ("challenger_score", "champion_score")}
        tracking.log_metrics(run_id, scores)
    tracking.set_tags(
        run_id,
        {f"retrain.{k}": v for k, v in outcome.items() if not k.endswith("_score") and k != "line"},
    )
    outcome["mlflow_run"] = tracking.run_link(run_id)
    records.publish(f"{pipeline}-retrain", _record(pipeline, outcome), "retrain decision")
    return outcome
