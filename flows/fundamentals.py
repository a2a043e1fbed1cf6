"""Laboratorio 3's fundamentals as a pipeline: the toy a^n b^n sequences, the NumPy RNN and
LSTM written from scratch and the PyTorch LSTM, one MLflow child run each.

sequences (Parquet) -> numpy_rnn | numpy_lstm | torch_lstm: train, losses, predictions
"""

import hashlib
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from flows import champion, dashboard, recover  # noqa: E402
from flows.config import FundamentalsConfig, flatten  # noqa: E402
from flows.pipelines import open_run, resolve, run_tags  # noqa: E402
from tasks.engine import records, tracking  # noqa: E402
from tasks.engine.parity import Check, check_parity  # noqa: E402
from tasks.engine.stage import run_logger  # noqa: E402
from tasks.plots import integer_epochs, legend_outside, report_header, title  # noqa: E402
from tasks.runtime.loop import Plan  # noqa: E402
from tasks.runtime.trainer import fit  # noqa: E402
from tasks.toy import make_sequences, read_sequences  # noqa: E402
from tasks.train.fundamentals import one_hot_pairs, recipe  # noqa: E402

PIPELINE = "fundamentals"
PRIMARY_METRIC = ("test_loss", "min")
EPOCHS = {"numpy_rnn": "numpy_rnn_epochs", "numpy_lstm": "numpy_lstm_epochs",
          "torch_lstm": "torch_epochs"}  # fmt: skip
LOSS_NOTE = {
    "numpy": "loss = summed cross-entropy over the steps / 4, the notebook's NumPy loss",
    "torch": "loss = mean cross-entropy per step (nn.CrossEntropyLoss), the notebook's",
}


def fingerprint(config: FundamentalsConfig) -> str:
    """Generated data: its parameters and seed are the data."""
    parts = [config.data.model_dump(), config.train.seed]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def loss_figure(kind: str, train: list[float], val: list[float], heading: str):
    """Training and validation loss per epoch (heading: plots.title's)."""
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    epochs = range(1, len(train) + 1)
    ax.plot(epochs, train, "r", label="training")
    ax.plot(epochs, val, "b", label="validation")
    unit = "mean per step" if kind == "torch_lstm" else "summed over the steps / 4"
    ax.set_ylabel(f"cross-entropy, {unit} (nats)")
    ax.set_title(heading)
    integer_epochs(ax)
    legend_outside(ax)
    return fig


def predictions_markdown(model, tokens: list, pairs: list, idx_to_word) -> str:
    lines = ["| input | target | predicted |", "|---|---|---|"]
    for (x_words, y_words), (x, _) in zip(tokens, pairs, strict=True):
        pred = [idx_to_word[i] for i in model.predict(x)]
        lines.append(f"| {' '.join(x_words)} | {' '.join(y_words)} | {' '.join(pred)} |")
    return "\n".join(lines) + "\n"


@task(name="train-model", cache_policy=NO_CACHE)
def train_model(kind: str, parts: dict, pairs: dict, idx_to_word, config, parent: str,
                where: Path | None) -> dict:  # fmt: skip
    """One kind trained by the runtime in its own child run, checkpointed in `where`."""
    cfg = config.train
    note = LOSS_NOTE["torch" if kind == "torch_lstm" else "numpy"]
    if kind != "torch_lstm":
        grads = "the notebook's" if cfg.notebook_gradients else "exact"
        note += f"; {grads} gradients"
    epochs = getattr(cfg, EPOCHS[kind])
    params = {"model.kind": kind, "epochs": epochs, **flatten(cfg)}
    tags = {"model.kind": kind, "mlflow.note.content": note}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one sequence per step: more threads only wait on each other
    try:
        with tracking.child_run(parent, PIPELINE, kind, params, tags) as run_id:
            trained, fitted = fit(
                recipe(kind, len(idx_to_word), pairs, cfg),
                Plan.of(cfg, epochs=epochs),
                checkpoints=where,
                run_id=run_id,
                meta={"run_ids": [run_id, parent]},
            )
            final = _logged(run_id, kind, trained, fitted, parts, pairs, idx_to_word,
                            config.profile)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    run_logger().info("%s: train %.4f, val %.4f, test %.4f", kind, *final.values())
    history = (fitted.train_loss, fitted.series("val_loss"))
    return {"kind": kind, "run_id": run_id, **final, "history": history}


def _logged(run_id, kind, trained, fitted, parts, pairs, idx_to_word, profile) -> dict:
    """The child run's final losses, loss curves and test predictions (no model is
    registered: the reports say so)."""
    train_loss, val_loss = fitted.train_loss, fitted.series("val_loss")
    final = {"train_loss": train_loss[-1], "val_loss": val_loss[-1],
             "test_loss": trained.mean_loss(pairs["test"])}  # fmt: skip
    tracking.log_metrics(run_id, final, step=len(train_loss))
    heading = title("training and validation loss", PIPELINE, profile, kind)
    fig = loss_figure(kind, train_loss, val_loss, heading)
    tracking.log_figure(run_id, fig, "loss.png")
    plt.close(fig)
    md = report_header("test predictions", kind, None, profile, PRIMARY_METRIC[0],
                       final["test_loss"])  # fmt: skip
    md += predictions_markdown(trained, parts["test"], pairs["test"], idx_to_word)
    tracking.log_text(run_id, md, "predictions.md")
    return final


def tune_stages(config: FundamentalsConfig) -> list:
    """The stage a tuning trial reads (the toy sequences; built once, then from cache)."""
    return [make_sequences.fn(PIPELINE, config.data, config.train.seed)]


TUNE_METRIC = ("val_loss", "min")


def trial_epochs(config: FundamentalsConfig) -> int:
    """The epochs of the kind a tuning trial trains (each kind has its own count)."""
    return getattr(config.train, EPOCHS[config.train.kinds[0]])


def tune_trial(config: FundamentalsConfig, run_id: str, monitor) -> float:
    """One tuning trial (flows/tune.py): the first kind of train.kinds trained on the train
    sequences, its validation loss reported each epoch to `monitor` (taken before the epoch's
    updates, as the notebook). Never reads the test sequences. Returns the validation loss
    after the last epoch."""
    (seqs,) = tune_stages(config)
    parts, word_to_idx, idx_to_word = read_sequences(seqs)
    pairs = one_hot_pairs({k: parts[k] for k in ("train", "val")}, word_to_idx)
    kind, cfg = config.train.kinds[0], config.train
    tracking.set_tags(run_id, {"model.kind": kind})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one sequence per step
    try:
        trained, _ = fit(recipe(kind, len(idx_to_word), pairs, cfg),
                         Plan.of(cfg, epochs=trial_epochs(config), progress=False),
                         run_id=run_id, monitor=monitor)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return trained.mean_loss(pairs["val"])


@flow(name=PIPELINE, flow_run_name=dashboard.RunName(PIPELINE))
def fundamentals(
    config: FundamentalsConfig | None = None,
    profile: str | None = None,
    overrides: list[str] | None = None,
    promote: bool | None = None,
) -> str:
    """Returns the parent MLflow run id."""
    config = resolve(PIPELINE, config, profile, overrides)
    tags = run_tags(fingerprint(config))
    with open_run(PIPELINE, config, tags) as run_id:
        seqs = make_sequences(PIPELINE, config.data, config.train.seed)
        tracking.log_stages(run_id, [seqs])
        parts, word_to_idx, idx_to_word = read_sequences(seqs)
        pairs = one_hot_pairs(parts, word_to_idx)
        metrics = {"vocab_size": len(word_to_idx), **{f"{k}_sequences": len(v)
                                                       for k, v in parts.items()}}  # fmt: skip
        tracking.log_metrics(run_id, metrics)
        folders = {k: recover.checkpoint_folder(PIPELINE, [seqs.fingerprint], config.train, k)
                   for k in config.train.kinds}  # fmt: skip
        epochs = {k: getattr(config.train, EPOCHS[k]) for k in config.train.kinds}
        with recover.keep_models(folders, epochs) as where:
            results = [train_model(k, parts, pairs, idx_to_word, config, run_id, where[k])
                       for k in config.train.kinds]  # fmt: skip
        per_model = {f"{m}.{r['kind']}": r[m] for r in results
                     for m in ("train_loss", "val_loss", "test_loss")}  # fmt: skip
        tracking.log_metrics(run_id, per_model)
        metrics |= per_model
        record = records.pipeline_record(PIPELINE, config.profile, run_id,
                                         tracking.run_link(run_id), [seqs], metrics)  # fmt: skip
        records.publish(f"{PIPELINE}-run", record, f"{PIPELINE} {config.profile}: run record")
        if config.profile == "parity":
            got = {}
            for r in results:
                for e, (train, val) in enumerate(zip(*r["history"], strict=True)):
                    got[f"{r['kind']} train_loss@{e}"] = train
                    got[f"{r['kind']} val_loss@{e}"] = val
            check_parity(run_id, PIPELINE, PARITY, got, config.strict_parity)
        champion.finish(PIPELINE, config, run_id, metrics, record, promote)
    return run_id


def _printed(kind: str, epoch: int, train: float, val: float, tol: float) -> list[Check]:
    return [Check(f"{kind} train_loss@{epoch}", train, tol=tol),
            Check(f"{kind} val_loss@{epoch}", val, tol=tol)]  # fmt: skip


# The losses the notebook prints (Laboratorio 3). NumPy: to its 7th digit (we reproduce every
# printed digit); PyTorch float32 on another CPU: within 2e-3 (see bench/RESULTS.md).
PARITY = [
    *_printed("numpy_rnn", 0, 4.05046509496538, 4.801971835967155, 1e-6),
    *_printed("numpy_rnn", 1900, 1.0640880623573374, 1.4524183517051121, 1e-6),
    *_printed("numpy_lstm", 0, 2.9228179938116403, 4.499707061171418, 1e-6),
    *_printed("numpy_lstm", 490, 0.6560922560461719, 0.7585088791899377, 1e-6),
    *_printed("torch_lstm", 490, 0.28825098276138306, 0.27527761459350586, 2e-3),
]


def score(config: FundamentalsConfig, version) -> float:
    raise NotImplementedError(
        "fundamentals trains on generated toy data and registers no model: nothing to retrain"
    )
