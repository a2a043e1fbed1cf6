"""The Seq2Seq translation pipeline (Laboratorio 4, part 2), German -> English on Multi30k.

ingest (3 archives) -> tokenize (spaCy) -> vocab (train split) -> encode (Parquet)
       -> train (best-validation checkpoint) -> evaluate (test loss/ppl, BLEU) -> register
"""

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import torch
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import recover
from flows.config import Seq2SeqConfig, flatten
from flows.pipelines import resolve, run_tags
from models.seq2seq import count_parameters
from tasks.engine import records, tracking
from tasks.engine.parity import Check, check_parity
from tasks.engine.stage import StageOutput, run_logger
from tasks.runtime.loop import Build, Fitted, Plan
from tasks.runtime.trainer import fit
from tasks.train.seq2seq import corpus_bleu, detokenize, evaluate_loss, translate_ids
from tasks.translation import (
    SPLITS,
    build_vocabs,
    encode,
    encode_parallel,
    ingest_parallel,
    load_tokenizer,
    read_split,
    read_vocabs,
    tokenize_parallel,
    tokenize_texts,
)

PIPELINE = "seq2seq"
PRIMARY_METRIC = ("test_bleu", "max")


def fingerprint(config: Seq2SeqConfig) -> str:
    from tasks.engine.catalog import DATASETS

    spec = DATASETS[config.data.dataset]
    parts = [spec.file(name).sha256 for name, _ in SPLITS.values()]
    parts += [config.data.src_lang, config.data.trg_lang, config.data.limit_train]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


@task(name="train", cache_policy=NO_CACHE)
def train_task(encoded: StageOutput, vocab: StageOutput, cfg, run_id: str,
               checkpoints: str | None, meta: dict) -> tuple[torch.nn.Module, Fitted]:  # fmt: skip
    """The runtime's `fit` on tasks/train/seq2seq.py's recipe: (the best-validation epoch's
    model on the CPU, the Fitted record)."""
    logger = run_logger()
    if cfg.warm_start:
        logger.warning("seq2seq has no warm start yet: training from scratch")
    src_vocab, trg_vocab = read_vocabs(vocab)
    kwargs = {"encoded": encoded.path, "src_vocab": len(src_vocab),
              "trg_vocab": len(trg_vocab), "cfg": cfg}  # fmt: skip
    where = Path(checkpoints) if checkpoints else None

    def close_runs(ids: list[str]) -> None:  # the runs a kill left RUNNING: KILLED
        tracking.close_interrupted(ids, run_id)

    build = Build("tasks.train.seq2seq:recipe", kwargs)
    recipe, fitted = fit(build, Plan.of(cfg), where, run_id, meta, close_runs)
    n_params = count_parameters(recipe.model)
    logger.info("Seq2Seq: %d trainable parameters, device %s; best epoch %d (val loss %.4f)",
                n_params, fitted.device, fitted.best_epoch + 1, fitted.best_value)  # fmt: skip
    tracking.log_metrics(run_id, {"n_params": n_params})
    return recipe.model.cpu(), fitted


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(model, rows, encoded, vocab, cfg, batch_size: int, run_id: str) -> dict:
    """Test loss/perplexity with the best checkpoint, greedy translations, corpus BLEU."""
    import pyarrow.parquet as pq

    logger = run_logger()
    src_vocab, trg_vocab = read_vocabs(vocab)
    test = read_split(encoded, "test")
    test_loss = evaluate_loss(model, test, batch_size, torch.device("cpu"))
    hyp_ids = translate_ids(model, test[0], torch.device("cpu"), cfg.max_len)
    hyps = [detokenize([trg_vocab[i] for i in ids]) for ids in hyp_ids]
    table = pq.read_table(rows.file("test.parquet"))
    sources, refs = table.column("src").to_pylist(), table.column("trg").to_pylist()
    bleu = corpus_bleu(hyps, refs)
    metrics = {"test_loss": test_loss, "test_ppl": math.exp(test_loss), "test_bleu": bleu}
    logger.info("test loss %.3f  ppl %.1f  BLEU %.2f", test_loss, metrics["test_ppl"], bleu)
    lines = ["| source | reference | hypothesis |", "|---|---|---|"]
    shown = list(zip(sources, refs, hyps, strict=True))[: cfg.examples]
    lines += [f"| {s} | {r} | {h} |" for s, r, h in shown]
    tracking.log_text(run_id, "\n".join(lines) + "\n", "translations.md")
    tracking.log_json(run_id, src_vocab, "src_vocab.json")
    tracking.log_json(run_id, trg_vocab, "trg_vocab.json")
    tracking.log_metrics(run_id, metrics)
    return metrics


@flow(name=PIPELINE)
def seq2seq(
    config: Seq2SeqConfig | None = None,
    profile: str | None = None,
    overrides: list[str] | None = None,
) -> str:
    """Returns the MLflow run id."""
    config = resolve(PIPELINE, config, profile, overrides)
    d = config.data
    tags = run_tags(fingerprint(config))
    with tracking.pipeline_run(PIPELINE, config.profile, flatten(config), tags) as run_id:
        rows = ingest_parallel(PIPELINE, d.dataset, d.src_lang, d.trg_lang, d.limit_train)
        tokens = tokenize_parallel(PIPELINE, rows, config.tokenize)
        vocab = build_vocabs(PIPELINE, tokens, config.vocab.min_freq)
        encoded = encode_parallel(PIPELINE, tokens, vocab)
        stages = [rows, tokens, vocab, encoded]
        tracking.log_stages(run_id, stages)
        metrics = {"src_vocab_size": vocab.stats["src_vocab_size"],
                   "trg_vocab_size": vocab.stats["trg_vocab_size"],
                   "train_pairs": rows.stats["train_pairs"]}  # fmt: skip
        tracking.log_metrics(run_id, metrics)
        ckpt = recover.checkpoint_folder(PIPELINE, [encoded.fingerprint, vocab.fingerprint],
                                         config.train)  # fmt: skip
        meta = {"run_ids": [run_id], "pipeline": PIPELINE, "profile": config.profile}
        with recover.keep_model(PIPELINE, ckpt, config.train.epochs) as owned:  # errors name it
            model, fitted = train_task(encoded, vocab, config.train, run_id,
                                       str(ckpt) if owned else None, meta)  # fmt: skip
            metrics |= evaluate_task(model, rows, encoded, vocab, config.evaluate,
                                     config.train.batch_size, run_id)  # fmt: skip
            example = np.array([[2, 5, 6, 3]], dtype=np.int64).T  # source ids [len, 1]
            hyp = model.greedy(torch.as_tensor(example), 2, 3, 5)[0]  # <sos> = 2, <eos> = 3
            reg = tracking.register_task(run_id, model, PIPELINE, example,
                                         np.asarray([hyp or [3]], dtype=np.int64))  # fmt: skip
        metrics |= {"final_train_loss": fitted.history[-1]["train_loss"],
                    "best_val_loss": fitted.best_value, "tokens_per_sec": fitted.per_sec,
                    "model_version": reg["version"]}  # fmt: skip
        record = records.pipeline_record(PIPELINE, config.profile, run_id,
                                         tracking.run_link(run_id), stages, metrics)  # fmt: skip
        records.publish(f"{PIPELINE}-run", record, f"{PIPELINE} {config.profile}: run record")
        if config.profile == "parity":
            got = {k: metrics[k] for k in ("src_vocab_size", "trg_vocab_size")}
            got["parameters"] = count_parameters(model)
            check_parity(run_id, PIPELINE, PARITY, got, config.strict_parity)
    return run_id


# The notebook's figures (Laboratorio 4, part 2) that the parity profile must reproduce.
PARITY = [
    Check("src_vocab_size", 7_853),
    Check("trg_vocab_size", 5_893),
    Check("parameters", 13_898_501),
]


def load_translator(version: int | str | None = None):
    """(translate(list of German sentences) -> English, model version) from the registry:
    the champion unless a version is given."""
    v = version if version is not None else tracking.champion(PIPELINE)
    if v is None:
        raise LookupError("no seq2seq champion yet: run `seqflow run seq2seq` first")
    mv = v if hasattr(v, "run_id") else tracking.client().get_model_version(PIPELINE, str(v))
    model = tracking.load_model(PIPELINE, mv.version)
    params = tracking.get_run(mv.run_id).data.params
    src_vocab = tracking.load_json(mv.run_id, "src_vocab.json")
    trg_vocab = tracking.load_json(mv.run_id, "trg_vocab.json")
    tokenizer = load_tokenizer(params["tokenize.src_model"])
    lower = params["tokenize.lowercase"] == "True"
    reverse = params["tokenize.reverse_src"] == "True"
    max_len = int(params["evaluate.max_len"])

    def translate(sentences: list[str]) -> list[str]:
        ids = encode(tokenize_texts(sentences, tokenizer, lower, reverse), src_vocab)
        out = translate_ids(model, ids, torch.device("cpu"), max_len)
        return [detokenize([trg_vocab[i] for i in h]) for h in out]

    return translate, int(mv.version)


@task(name="score", cache_policy=NO_CACHE)
def score(config: Seq2SeqConfig, version: int | str) -> float:
    """Test BLEU of registered model `version` on the Multi30k test split."""
    d = config.data
    rows = ingest_parallel.fn(PIPELINE, d.dataset, d.src_lang, d.trg_lang, d.limit_train)
    import pyarrow.parquet as pq

    table = pq.read_table(rows.file("test.parquet"))
    translate, _ = load_translator(version)
    hyps = translate(table.column("src").to_pylist())
    return corpus_bleu(hyps, table.column("trg").to_pylist())
