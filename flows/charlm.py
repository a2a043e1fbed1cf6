"""The character-level language-model pipeline (Laboratorio: RNN, LSTM, GRU on Don Quijote).

ingest (Gutenberg markers) -> encode (characters) -> windows (Parquet)
       -> one child MLflow run per model kind: train, test perplexity, samples
       -> perplexity figure, the best next-character model registered
"""

import hashlib
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from flows.config import CharLMConfig, flatten  # noqa: E402
from flows.pipelines import resolve, run_tags  # noqa: E402
from tasks.chars import encode_chars, ingest_book, read_chars, read_windows, window_chars  # noqa: E402
from tasks.data import data_fingerprint, incoming_files  # noqa: E402
from tasks.engine import records, tracking  # noqa: E402
from tasks.engine.parity import Check, check_parity  # noqa: E402
from tasks.engine.stage import run_logger  # noqa: E402
from tasks.train.charlm import continue_text, perplexity, train_charlm  # noqa: E402
from tasks.train.word2vec import pick_device  # noqa: E402

PIPELINE = "charlm"
PRIMARY_METRIC = ("test_ppl", "min")
DESCRIPTIONS = {
    "lstm_bidir": "Bidirectional LSTM: its backward half reads the characters it is asked to "
    "predict, so it is not a next-character model and its test perplexity is not comparable "
    "with the others (it is never registered as the champion).",
}


def incoming(config: CharLMConfig) -> list:
    return incoming_files(PIPELINE, ".txt") if config.data.incoming else []


def fingerprint(config: CharLMConfig) -> str:
    """What this config trains on (the book, the notebook_text choice, incoming texts)."""
    d = config.data
    parts = [data_fingerprint(d.dataset, d.file, None, incoming(config)), d.notebook_text]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def build_model(kind: str, vocab_size: int, cfg):
    from models.charlm import CharLM

    layers = 2 if kind in ("lstm_deep", "lstm_bidir") else cfg.n_layers  # the notebook's 2
    return CharLM(vocab_size, kind, hidden=cfg.hidden, n_layers=layers, dropout=cfg.dropout)


@task(name="train-variant", cache_policy=NO_CACHE)
def train_variant(kind: str, train, test, vocab: list[str], config, parent: str,
                  data_fp: str) -> dict:  # fmt: skip
    logger = run_logger()
    cfg = config.train
    torch.manual_seed(cfg.seed)
    device = pick_device(cfg.device)
    model = build_model(kind, len(vocab), cfg).to(device)
    tags = {"model.kind": kind, "mlflow.note.content": DESCRIPTIONS.get(kind, f"{kind} model"),
            "data_fingerprint": data_fp}  # fmt: skip
    with tracking.child_run(parent, PIPELINE, kind, {"model.kind": kind, **flatten(cfg)},
                            tags) as run_id:  # fmt: skip
        tracking.log_metrics(run_id, {"vocab_size": len(vocab)})

        def on_epoch(epoch: int, train_ppl: float, test_ppl: float) -> None:
            tracking.log_metrics(run_id, {"train_ppl": train_ppl, "test_ppl": test_ppl}, epoch)

        hist = train_charlm(model, train, test, cfg, kind, device, on_epoch)
        model = model.cpu()
        final = perplexity(model, test, cfg.batch_size, "cpu")
        samples = {p: {"greedy": continue_text(model, vocab, p, config.evaluate.n_chars),
                       "sampled": continue_text(model, vocab, p, config.evaluate.n_chars,
                                                config.evaluate.temperature, seed=cfg.seed)}
                   for p in config.evaluate.prompts}  # fmt: skip
        tracking.log_metrics(run_id, {"test_ppl": final, "chars_per_sec": hist.chars_per_sec},
                             step=cfg.epochs)  # fmt: skip
        logger.info("%s: test perplexity %.3f, %.0f chars/s", kind, final, hist.chars_per_sec)
    return {"kind": kind, "run_id": run_id, "test_ppl": final, "hist": hist, "model": model,
            "samples": samples}  # fmt: skip


def perplexity_figure(results: list[dict]):
    fig, ax = plt.subplots(figsize=(8, 5))
    for r in results:
        epochs = range(1, len(r["hist"].train_ppl) + 1)
        (line,) = ax.plot(epochs, r["hist"].train_ppl, label=f"{r['kind']} train")
        ax.plot(epochs, r["hist"].test_ppl, "--", color=line.get_color(), label=f"{r['kind']} test")
    ax.set_xlabel("epoch")
    ax.set_ylabel("perplexity")
    ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def samples_markdown(results: list[dict]) -> str:
    lines = ["| model | prompt | greedy | sampled |", "|---|---|---|---|"]
    for r in results:
        for prompt, s in r["samples"].items():
            lines.append(f"| {r['kind']} | `{prompt}` | `{s['greedy']}` | `{s['sampled']}` |")
    return "\n".join(lines) + "\n"


@flow(name=PIPELINE)
def charlm(
    config: CharLMConfig | None = None,
    profile: str | None = None,
    overrides: list[str] | None = None,
) -> str:
    """Returns the parent MLflow run id."""
    config = resolve(PIPELINE, config, profile, overrides)
    d = config.data
    new_texts = incoming(config)
    data_fp = fingerprint(config)
    tags = run_tags(data_fp, incoming_files=len(new_texts))
    with tracking.pipeline_run(PIPELINE, config.profile, flatten(config), tags) as run_id:
        book = ingest_book(PIPELINE, d.dataset, d.file, new_texts)
        chars = encode_chars(PIPELINE, book, d.notebook_text)
        wins = window_chars(PIPELINE, chars, config.windows)
        stages = [book, chars, wins]
        tracking.log_stages(run_id, stages)
        vocab, _ = read_chars(chars)
        train, test = read_windows(wins, "train"), read_windows(wins, "test")
        metrics = {"vocab_size": len(vocab), "train_windows": len(train),
                   "test_windows": len(test)}  # fmt: skip
        tracking.log_metrics(run_id, metrics)
        tracking.log_json(run_id, vocab, "vocab.json")
        results = [train_variant(k, train, test, vocab, config, run_id, data_fp)
                   for k in config.train.kinds]  # fmt: skip
        fig = perplexity_figure(results)
        tracking.log_figure(run_id, fig, "perplexity.png")
        plt.close(fig)
        tracking.log_text(run_id, samples_markdown(results), "samples.md")
        causal = [r for r in results if r["kind"] != "lstm_bidir"]
        if causal:
            best = min(causal, key=lambda r: r["test_ppl"])
            example = torch.zeros((1, config.windows.length), dtype=torch.long)
            reg = tracking.register_task(best["run_id"], best["model"], PIPELINE,
                                         example.numpy())  # fmt: skip
            tracking.log_json(best["run_id"], vocab, "vocab.json")
            tracking.set_tags(run_id, {"best_kind": best["kind"]})
            metrics |= {"test_ppl": best["test_ppl"], "model_version": reg["version"]}
            tracking.log_metrics(run_id, {"test_ppl": best["test_ppl"]})
        metrics |= {f"test_ppl.{r['kind']}": r["test_ppl"] for r in results}
        record = records.pipeline_record(PIPELINE, config.profile, run_id,
                                         tracking.run_link(run_id), stages, metrics)  # fmt: skip
        records.publish(f"{PIPELINE}-run", record, f"{PIPELINE} {config.profile}: run record")
        if config.profile == "parity":
            got = {"vocab_size": len(vocab), "vocab": "".join(vocab)}
            check_parity(run_id, PIPELINE, PARITY, got, config.strict_parity)
    return run_id


# The notebook's figures that the parity profile must reproduce: its vocabulary, in order.
PARITY = [
    Check("vocab_size", 34),
    Check("vocab", " eaosnrlduitcmpqybhvgíjóféázñúxwkü"),
]


@task(name="score", cache_policy=NO_CACHE)
def score(config: CharLMConfig, version: int | str) -> float:
    """Held-out perplexity of registered model `version` on this config's test windows (the
    book's: incoming texts only add training windows)."""
    d = config.data
    book = ingest_book.fn(PIPELINE, d.dataset, d.file)
    wins = window_chars.fn(PIPELINE, encode_chars.fn(PIPELINE, book, d.notebook_text),
                           config.windows)  # fmt: skip
    model = tracking.load_model(PIPELINE, version)
    return perplexity(model, read_windows(wins, "test"), config.train.batch_size, "cpu")
