"""The word2vec pipeline (Laboratorio 4, part 1) as a Prefect flow.

ingest -> tokenize -> vocab -> drop rare tokens -> sliding-window pairs (Parquet shards)
       -> train -> evaluate -> log/register
"""

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import champion, dashboard, embedder, recover
from flows.config import Word2VecConfig, flatten
from flows.pipelines import check_source, open_run, resolve, run_tags
from tasks import sources
from tasks.data import incoming_files, ingest_csv
from tasks.engine import records, tracking
from tasks.engine.lineage import step_entry
from tasks.engine.parity import Check, check_parity
from tasks.evaluation import check_evaluation_split, evaluate_task, loss_figure, score_embeddings
from tasks.incoming import check_word2vec, data_fingerprint
from tasks.plots import title
from tasks.sources import ingest_source
from tasks.text import tokenize_tweets
from tasks.train import word2vec as training
from tasks.train.word2vec import check_ddp, train_task
from tasks.vocab import build_vocab, drop_rare_tokens, read_vocab
from tasks.windows import window_pairs

PIPELINE = "word2vec"
PRIMARY_METRIC = ("downstream_f1", "max")  # what retraining compares champion and challenger on


def own_data(config: Word2VecConfig) -> dict:
    """Your own data's mapping (tasks/sources.open_source): a text column, an optional label
    column (strings or numbers), one row per line of a .txt file."""
    d = config.data
    wanted = {"text_column": (d.text_column, ("string",))}
    if d.label_column is not None:
        wanted["label_column"] = (d.label_column, ("string", "number"))
    return {"wanted": wanted, "by_document": False}


def labelled(config: Word2VecConfig) -> bool:
    """Whether the run has labels for downstream F1 (the course's tweets always do)."""
    return not config.data.own or config.data.label_column is not None


def fingerprint(config: Word2VecConfig) -> str:
    """What this config trains on (source file, row limit, incoming files), before any stage;
    your own data: its identity (file sha256s or Hub revision) and column mapping."""
    d = config.data
    if d.own:
        return sources.data_fingerprint(d, own_data(config)["wanted"], PIPELINE)
    incoming = incoming_files(PIPELINE) if d.incoming else []
    return data_fingerprint(d.dataset, d.file, d.limit_rows, incoming)


def ingest_own(config: Word2VecConfig, task=ingest_source):
    """Your own data -> rows.parquet (tweet = the text column, label = the label column if
    any), every split in one file (word2vec trains on all rows); data.streaming reads the
    source as a stream, straight into the Parquet shards. task: the Prefect task or its .fn."""
    d = config.data
    columns = {"tweet": d.text_column}
    if d.label_column is not None:
        columns["label"] = d.label_column
    return task(PIPELINE, d, own_data(config)["wanted"], columns, merged=True, limit=d.limit_rows)


def preprocess(config: Word2VecConfig, incoming: list = (), keep: dict | None = None, *,
               as_task: bool = True) -> list:  # fmt: skip
    """ingest -> tokenize -> vocab -> drop rare -> windows: the stage outputs, in order, as
    Prefect tasks or their plain functions (as_task=False: outside a flow). Inside a flow on a
    Dask task runner the stages run their row-group shards on the workers.
    keep: which incoming rows to take (tasks/incoming.py: duplicates are dropped)."""

    def call(stage, *args):
        return stage(*args) if as_task else stage.fn(*args)

    d = config.data
    if d.own:
        rows = ingest_own(config, ingest_source if as_task else ingest_source.fn)
    else:
        rows = call(ingest_csv, PIPELINE, d.dataset, d.file, d.limit_rows, incoming, keep)
    if labelled(config):
        check_evaluation_split(rows, config.evaluate)  # before any training
    tokens = call(tokenize_tweets, PIPELINE, rows, config.tokenize)
    vocab = call(build_vocab, PIPELINE, tokens, config.vocab.min_count)
    encoded = call(drop_rare_tokens, PIPELINE, tokens, vocab)
    pairs = call(window_pairs, PIPELINE, encoded, config.windows.size, config.windows.shard_rows)
    return [rows, tokens, vocab, encoded, pairs]


def tune_stages(config: Word2VecConfig) -> list:
    """The stages a tuning trial reads, as plain functions (built once before the trials, then
    from cache). Tuning scores downstream F1, so the data needs labels."""
    if not labelled(config):
        raise ValueError(
            f"word2vec tuning scores downstream F1 on validation rows: "
            f"{config.data.source!r} has no label column (set data.label_column)"
        )
    return preprocess(config, as_task=False)


TUNE_METRIC = ("val_f1", "max")


def tune_trial(config: Word2VecConfig, run_id: str, monitor) -> float:
    """One tuning trial (flows/tune.py): the embeddings trained as the flow trains them, and
    after each epoch the downstream classifier fit on part of its training rows and scored on
    the rest (tasks/evaluation.validation_f1: val_f1, to `monitor`). The classifier's test rows
    are never scored. Returns the last epoch's val_f1."""
    from tasks.evaluation import label_codes, validation_f1
    from tasks.runtime.loop import Plan
    from tasks.runtime.trainer import fit
    from tasks.vocab import read_encoded

    _, _, vocab, encoded, pairs = tune_stages(config)
    ids, offsets, table = read_encoded(encoded)
    ev = config.evaluate
    labels, _, positive = label_codes(table.column("label").to_pylist(), ev.positive_label)
    recipe = training.recipe(str(pairs.path), str(vocab.path), config.train)
    values = []

    def each(epoch: int, row: dict) -> None:
        vectors = recipe.model.word_vectors().float().cpu().numpy()
        values.append(validation_f1(vectors, ids, offsets, labels, ev, positive))
        tracking.log_metrics(run_id, {"val_f1": values[-1]}, step=epoch)
        monitor(epoch, row | {"val_f1": values[-1]})

    fit(recipe, Plan.of(config.train, progress=False), run_id=run_id, monitor=each)
    return values[-1]


@flow(name=PIPELINE, flow_run_name=dashboard.RunName(PIPELINE))
def word2vec(
    config: Word2VecConfig | None = None,
    profile: str | None = None,
    overrides: list[str] | None = None,
    promote: bool | None = None,
) -> str:
    """Returns the MLflow run id. Give a whole `config`, or a `profile` name plus `--set`-style
    `overrides` (what deployments do); neither = the parity profile."""
    config = resolve(PIPELINE, config, profile, overrides)
    check_ddp(config.train)  # before any work
    d = config.data
    check_source(PIPELINE, config)  # your own data: read and its columns checked, before any stage
    # your own data's incoming files (its own format) are read by tasks/sources.py
    incoming = incoming_files(PIPELINE) if d.incoming and not d.own else []
    # every bad incoming row named before any stage or run; duplicates counted, dropped
    report = check_word2vec(incoming, d.dataset, d.file, d.limit_rows) if incoming else None
    data_fp = fingerprint(config) if d.own else data_fingerprint(d.dataset, d.file, d.limit_rows,
                                                                 incoming)  # fmt: skip
    tags = run_tags(data_fp, incoming_files=len(incoming))
    with open_run(PIPELINE, config, tags) as run_id:
        stages = preprocess(config, incoming, report.keep if report else None)
        rows, tokens, vocab, encoded, pairs = stages
        train_step = step_entry("train", {"pairs": pairs.fingerprint, "vocab": vocab.fingerprint},
                                config.train.model_dump(), (training,), ("torch",))  # fmt: skip
        tracking.log_stages(run_id, stages, [train_step])
        tracking.set_tags(run_id, {"rows_fingerprint": rows.fingerprint})
        metrics = {
            "train_rows": rows.stats["rows"]["all"] if d.own else rows.stats["rows"],
            "decode_errors": rows.stats.get("decode_errors", 0),
            "duplicate_rows": rows.stats.get("duplicate_rows", 0)
            or rows.stats.get("carved", {}).get("incoming", {}).get("duplicate_rows", 0),
            "vocab_size": vocab.stats["vocab_size"],
            "pairs": pairs.stats["pairs"],
        }
        tracking.log_metrics(run_id, metrics)
        ckpt = recover.checkpoint_folder(PIPELINE, [pairs.fingerprint, vocab.fingerprint],
                                         config.train)  # fmt: skip
        meta = {"profile": config.profile, "params": flatten(config)}
        with recover.keep_model(PIPELINE, ckpt, config.train.epochs) as owned:  # errors name it
            owned_ckpt = str(ckpt) if owned else None  # train.nproc > 1: rank 0 writes them
            model, fitted = train_task(pairs, vocab, config.train, run_id, owned_ckpt, meta)
            scores = evaluate_task(model, vocab, encoded, config.evaluate, run_id)
            version = embedder.register_task(run_id, model, vocab, scores["classifier"], config)
        heading = title("training loss", PIPELINE, config.profile, PIPELINE, version["version"])
        tracking.log_figure(run_id, loss_figure(fitted.train_loss, heading), "loss.png")
        metrics |= {
            "final_train_loss": fitted.train_loss[-1],
            "pairs_per_sec": fitted.per_sec,
            "downstream_f1": scores["downstream_f1"],
            "model_version": version["version"],
        }
        if scores["downstream_f1"] is None:  # no labels: the record says so, no metric logged
            metrics["downstream_f1"] = "not computed (no label column)"
        record = records.pipeline_record(
            PIPELINE, config.profile, run_id, tracking.run_link(run_id), stages, metrics
        )
        records.publish(f"{PIPELINE}-run", record, f"{PIPELINE} {config.profile}: run record")
        if config.profile == "parity" and not d.own:
            id2tok, _ = read_vocab(vocab)
            got = {"rows": metrics["train_rows"], "vocab_size": metrics["vocab_size"],
                   "tok2id[father]": id2tok.index("father") if "father" in id2tok else None,
                   "final_train_loss": metrics["final_train_loss"]}  # fmt: skip
            check_parity(run_id, PIPELINE, PARITY, got, config.strict_parity)
        champion.finish(PIPELINE, config, run_id, metrics, record, promote)
    return run_id


# The notebook's figures (Laboratorio 4, part 1) that the parity profile must reproduce.
PARITY = [
    Check("rows", 31_962),
    Check("vocab_size", 3_085),
    Check("tok2id[father]", 1),
    Check("final_train_loss", 6.75, "<="),
]


def primary_metric(config: Word2VecConfig) -> tuple[str, str]:
    """What the champion decision compares for this config: downstream_f1 (max) when the data
    has labels; without labels there is no F1, so the final training loss (min) of each
    version's run (flows/champion.py asks this)."""
    return PRIMARY_METRIC if labelled(config) else ("final_train_loss", "min")


@task(name="score", cache_policy=NO_CACHE)
def score(config: Word2VecConfig, version: int | str) -> float:
    """The primary metric of registered model `version` on the fixed evaluation data: the
    source file without incoming rows (downstream F1 of the hate class, fixed split). Your own
    data: downstream F1 on its labelled rows; without labels, the final training loss that
    version's run logged (primary_metric)."""
    from tasks.vocab import read_tokens

    d = config.data
    if not labelled(config):
        mv = tracking.client().get_model_version(PIPELINE, str(version))
        return float(tracking.get_run(mv.run_id).data.metrics["final_train_loss"])
    if d.own:
        rows = ingest_own(config, ingest_source.fn)
    else:
        rows = ingest_csv.fn(PIPELINE, d.dataset, d.file, d.limit_rows)
    tokens = tokenize_tweets.fn(PIPELINE, rows, config.tokenize)
    docs, labels = read_tokens(tokens)
    mv = tracking.client().get_model_version(PIPELINE, str(version))
    model = tracking.load_model(PIPELINE, version)
    id2tok = tracking.load_json(mv.run_id, "vocab.json")
    vectors = model.word_vectors().float().cpu().numpy()
    return score_embeddings(vectors, id2tok, docs, labels, config.evaluate)
