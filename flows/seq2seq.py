"""The Seq2Seq translation pipeline (Laboratorio 4, part 2), German -> English on Multi30k,
or any language pair of your own data (data.source, data.src_lang/trg_lang).

ingest (3 archives, or your source) -> [subword (SentencePiece, tokenize.subword)]
       -> tokenize (spaCy words by language, or subword pieces) -> vocab (train split)
       -> encode (Parquet) -> train (best-validation checkpoint)
       -> evaluate (test loss/ppl, BLEU lowercased and cased, chrF) -> register
"""

import hashlib
import json
import math
from pathlib import Path

import torch
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows import champion, dashboard, recover
from flows.config import Seq2SeqConfig
from flows.pipelines import check_source, open_run, resolve, run_tags
from models.seq2seq import count_parameters
from tasks.engine import records, tracking
from tasks.engine.parity import Check, check_parity
from tasks.engine.stage import StageOutput, run_logger
from tasks.plots import report_header
from tasks.runtime.loop import Build, Fitted, Plan
from tasks.runtime.trainer import fit
from tasks.subword import MODEL, Subword, train_subword
from tasks.train.seq2seq import (
    cased_bleu,
    corpus_bleu,
    corpus_chrf,
    evaluate_loss,
    to_text,
    token_bleu,
    translate_ids,
)
from tasks.translation import (
    SPLITS,
    UNK,
    build_vocabs,
    encode_parallel,
    ingest_own,
    ingest_parallel,
    load_tokenizer,
    read_split,
    read_vocabs,
    tokenize_parallel,
    tokenize_texts,
)

PIPELINE = "seq2seq"
PRIMARY_METRIC = ("test_bleu", "max")


def own_data(config: Seq2SeqConfig) -> dict:
    """tasks/sources.open_source's mapping for your own data: the source and target texts, from
    data.src_column/trg_column when set, else data.translation_column's src_lang/trg_lang key.
    Each language's tokenizer is loaded first: a code spaCy does not know is a SourceError."""
    d = config.data
    check_tokenizers(config)
    src = d.src_column or f"{d.translation_column}.{d.src_lang}"
    trg = d.trg_column or f"{d.translation_column}.{d.trg_lang}"
    keys = (
        "src_column" if d.src_column else "src_lang",
        "trg_column" if d.trg_column else "trg_lang",
    )
    return {"wanted": {keys[0]: (src, ("string",)), keys[1]: (trg, ("string",))}}


def check_tokenizers(config: Seq2SeqConfig) -> None:
    """Each side's spaCy tokenizer loads (spacy.blank(code) or an installed model), else a
    SourceError naming the code and the fix, before any stage."""
    from tasks.sources import SourceError

    d, tok = config.data, config.tokenize
    for side, model, lang in (
        ("src", tok.src_model, d.src_lang),
        ("trg", tok.trg_model, d.trg_lang),
    ):
        try:
            load_tokenizer(model)
        except (ImportError, ValueError, OSError) as err:
            raise SourceError(
                f"data.source {d.source!r}: spaCy has no tokenizer for {model!r} "
                f"(tokenize.{side}_model, from data.{side}_lang={lang!r}): {str(err)[:160]}. "
                f"Set data.{side}_lang to a language code spaCy knows (e.g. en, fr, de, es), or "
                f"--set tokenize.{side}_model=<an installed spaCy model or code>"
            ) from None


def ingest(config: Seq2SeqConfig, *, as_task: bool = True) -> StageOutput:
    """The ingest stage of config's data: the course archives, or your own source."""
    d = config.data
    if d.own:
        stage = ingest_own if as_task else ingest_own.fn
        return stage(PIPELINE, d, own_data(config)["wanted"], d.limit_train)
    stage = ingest_parallel if as_task else ingest_parallel.fn
    return stage(PIPELINE, d.dataset, d.src_lang, d.trg_lang, d.limit_train)


def fingerprint(config: Seq2SeqConfig) -> str:
    """What a model is trained on: the archives as read (each fetched and verified against
    its sha256, so a repacked or truncated one is refused here as `run` refuses it), or your
    own source's identity (file sha256s or Hub revision, and the column mapping); the
    languages, the pair limit and, with data.incoming, the new pairs the incoming files add."""
    d = config.data
    if d.own:
        from tasks.sources import data_fingerprint

        parts = [data_fingerprint(d, own_data(config)["wanted"])]
    else:
        from tasks.data import fetch
        from tasks.engine.catalog import DATASETS

        spec = DATASETS[d.dataset]
        for name, _ in SPLITS.values():
            fetch(spec, name)  # refuses a file whose sha256 is not the catalog's
        parts = [spec.file(name).sha256 for name, _ in SPLITS.values()]
    parts += [d.src_lang, d.trg_lang, d.limit_train]
    added = incoming_report(config).fingerprint if d.incoming else ""
    if added:  # no new pair: the same data as a run without data.incoming
        parts.append(added)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


# new pairs arrive as <src>\t<trg> .tsv files checked by tasks/pairs.py, for the course's data
# and for yours (not tasks/sources.py's incoming files in the source's own format)
OWN_INCOMING = "pairs"


def incoming_files() -> list[Path]:
    from tasks.data import incoming_files as files

    return files(PIPELINE, ".tsv")


def incoming_report(config: Seq2SeqConfig, files: list[Path] = ()):
    """tasks/pairs.py's check of the incoming folder (and `files`, about to join it) against
    the train split the run reads: IncomingError names every bad line."""
    from tasks.pairs import check_pairs

    rows = ingest(config, as_task=False)
    names = {Path(f).name for f in files}
    earlier = [p for p in incoming_files() if p.name not in names]
    return check_pairs([Path(f) for f in files], rows, earlier)


@task(name="train", cache_policy=NO_CACHE)
def train_task(encoded: StageOutput, vocab: StageOutput, cfg, run_id: str,
               checkpoints: str | None, meta: dict) -> tuple[torch.nn.Module, Fitted]:  # fmt: skip
    """The runtime's `fit` on tasks/train/seq2seq.py's recipe: (the best-validation epoch's
    model on the CPU, the Fitted record)."""
    logger = run_logger()
    if cfg.warm_start:  # the vocabulary is rebuilt with the new pairs: no embedding to carry
        logger.warning("seq2seq trains its challenger from scratch on the rebuilt vocabulary: "
                       "--warm-start is ignored")  # fmt: skip
    src_vocab, trg_vocab = read_vocabs(vocab)
    kwargs = {"encoded": encoded.path, "src_vocab": len(src_vocab),
              "trg_vocab": len(trg_vocab), "cfg": cfg}  # fmt: skip
    where = Path(checkpoints) if checkpoints else None
    build = Build("tasks.train.seq2seq:recipe", kwargs)
    recipe, fitted = fit(build, Plan.of(cfg), where, run_id, meta)
    n_params = count_parameters(recipe.model)
    kept = (f"best epoch {fitted.best_epoch + 1}" if fitted.best_epoch is not None
            else f"the last epoch{'s averaged' if cfg.average_last > 1 else ''}")  # fmt: skip
    logger.info("Seq2Seq: %d trainable parameters, device %s; %s (val loss %.4f)", n_params,
                fitted.device, kept, kept_val_loss(fitted))  # fmt: skip
    tracking.log_metrics(run_id, {"n_params": n_params})
    return recipe.model.cpu(), fitted


def text_stages(config: Seq2SeqConfig, rows: StageOutput, *, as_task: bool = True) -> list:
    """rows -> [subword (with tokenize.subword), tokens, vocab, encoded]: Prefect tasks, or
    their plain functions (as_task=False)."""

    def call(stage, *args):
        return stage(*args) if as_task else stage.fn(*args)

    tok = config.tokenize
    sub = call(train_subword, PIPELINE, rows, tok) if tok.subword != "none" else None
    tokens = call(tokenize_parallel, PIPELINE, rows, tok, sub)
    vocab = call(build_vocabs, PIPELINE, tokens, config.vocab.min_freq, sub)
    return [*([sub] if sub else []), tokens, vocab, call(encode_parallel, PIPELINE, tokens, vocab)]


def subword_stage(stages: list) -> StageOutput | None:
    """The subword stage among a run's stages, if it has one."""
    return next((s for s in stages if s.stage == "subword"), None)


def subword_of(stages: list) -> Subword | None:
    """The subword model among a run's stages, if it has one."""
    stage = subword_stage(stages)
    return Subword.read(stage.file(MODEL)) if stage else None


def tune_stages(config: Seq2SeqConfig) -> list:
    """The stages a tuning trial reads, as plain functions (built once, then from cache)."""
    rows = ingest(config, as_task=False)
    return [rows, *text_stages(config, rows, as_task=False)]


TUNE_METRIC = ("val_bleu", "max")
TUNE_EPOCH_SENTENCES = 500  # the validation sentences decoded after each epoch (pruning)


def val_bleu(model, valid, refs: list[str], trg_vocab: list[str], cfg, lang: str,
             subword: Subword | None = None) -> float:  # fmt: skip
    """sacreBLEU (as test_bleu) of greedy translations of validation sources against their
    raw references."""
    ids = translate_ids(model, valid, torch.device("cpu"), cfg.max_len, beam=1)
    return corpus_bleu([to_text([trg_vocab[i] for i in h], lang, subword) for h in ids], refs)


def tune_trial(config: Seq2SeqConfig, run_id: str, monitor) -> float:
    """One tuning trial (flows/tune.py): the model trained as the flow trains it (best epoch
    or averaged weights kept by validation loss); after each epoch greedy val_bleu on the
    first TUNE_EPOCH_SENTENCES validation pairs goes to `monitor`. Returns greedy val_bleu of
    the kept weights on the whole validation split. Never reads the test split."""
    import pyarrow.parquet as pq

    from tasks.train.seq2seq import recipe as make_recipe

    stages = tune_stages(config)
    rows, vocab, encoded, subword = stages[0], stages[-2], stages[-1], subword_of(stages)
    src_vocab, trg_vocab = read_vocabs(vocab)
    refs = pq.read_table(rows.file("valid.parquet")).column("trg").to_pylist()
    built = make_recipe(encoded.path, len(src_vocab), len(trg_vocab), config.train)
    sources, n, lang = built.valid[0], TUNE_EPOCH_SENTENCES, config.data.trg_lang

    def each(epoch: int, row: dict) -> None:
        score = val_bleu(built.model, sources[:n], refs[:n], trg_vocab, config.evaluate, lang,
                         subword)  # fmt: skip
        tracking.log_metrics(run_id, {"val_bleu_part": score}, step=epoch)
        monitor(epoch, row | {"val_bleu": score})

    recipe, _ = fit(built, Plan.of(config.train, progress=False), run_id=run_id, monitor=each)
    recipe.model.cpu()
    return val_bleu(recipe.model, sources, refs, trg_vocab, config.evaluate, lang, subword)


def kept_val_loss(fitted: Fitted) -> float:
    """The validation loss of the weights training kept: the best epoch's where the recipe
    selects, else the last (averaged) epoch's."""
    return fitted.best_value if fitted.best_epoch is not None else fitted.history[-1]["val_loss"]


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(model, rows, tokens, encoded, vocab, cfg, batch_size: int,
                  run_id: str, lang: str = "en", subword: StageOutput | None = None,
                  trg_model: str | None = None) -> tuple[dict, str]:  # fmt: skip
    """Test loss/perplexity, greedy and (for a model with beam search) beam translations of
    test2016, each scored four ways: sacreBLEU on detokenized text against the raw references,
    lowercased (`test_bleu`) and cased as translation systems are compared
    (`test_sacrebleu_cased`, its signature a param), BLEU on lowercased spaCy tokens as the
    pytorch-seq2seq tutorials score (`test_bleu_tok`) and chrF (`test_chrf`). The unsuffixed
    metrics are the decoding the model serves with (beam where it has it); `_greedy` ones are
    always greedy; `test_unk_outputs` counts <unk> in the served translations. Returns
    (metrics, the translations table the flow logs once the model's version is known)."""
    import pyarrow.parquet as pq

    logger = run_logger()
    src_vocab, trg_vocab = read_vocabs(vocab)
    test = read_split(encoded, "test")
    cpu = torch.device("cpu")
    test_loss = evaluate_loss(model, test, batch_size, cpu)
    table = pq.read_table(rows.file("test.parquet"))
    sources, refs = table.column("src").to_pylist(), table.column("trg").to_pylist()
    sub = Subword.read(subword.file(MODEL)) if subword else None
    if sub:  # the tutorials' token BLEU on spaCy words, whatever the model's units
        spacy_words = load_tokenizer(trg_model or lang)
        ref_tokens = tokenize_texts(refs, spacy_words, True, False)
    else:
        ref_tokens = pq.read_table(tokens.file("test.parquet")).column("trg_tokens").to_pylist()
    metrics = {"test_loss": test_loss, "test_ppl": math.exp(test_loss)}
    beam = cfg.beam if hasattr(model, "beam") else 1
    decoded = {}
    for name, width in [("greedy", 1)] + ([("beam", beam)] if beam > 1 else []):
        ids = translate_ids(model, test[0], cpu, cfg.max_len, beam=width, alpha=cfg.length_penalty)
        words = [[trg_vocab[i] for i in h] for h in ids]
        decoded[name] = [to_text(w, lang, sub) for w in words]
        if sub:
            words = tokenize_texts(decoded[name], spacy_words, True, False)
        cased, signature = cased_bleu(decoded[name], refs)
        scores = {"test_bleu": corpus_bleu(decoded[name], refs),
                  "test_sacrebleu_cased": cased,
                  "test_bleu_tok": token_bleu(words, ref_tokens),
                  "test_chrf": corpus_chrf(decoded[name], refs)}  # fmt: skip
        metrics |= {f"{k}_{name}": v for k, v in scores.items()}
        unks = sum(h.count(UNK) for h in ids)
        logger.info("test %s: BLEU %.2f (sacreBLEU, lowercased), %.2f (cased), %.2f (tokens), "
                    "chrF %.2f; %d <unk> in the outputs", name, *scores.values(),
                    unks)  # fmt: skip
    served = "beam" if beam > 1 else "greedy"
    metrics |= {
        k: metrics[f"{k}_{served}"]
        for k in ("test_bleu", "test_sacrebleu_cased", "test_bleu_tok", "test_chrf")
    }
    metrics["test_unk_outputs"] = unks
    tracking.log_params(run_id, {"sacrebleu_signature": signature})
    metrics["beam_width"] = beam
    logger.info("test loss %.3f  ppl %.1f  BLEU %.2f (%s)", test_loss, metrics["test_ppl"],
                metrics["test_bleu"], served)  # fmt: skip
    table = translations_markdown(sources, refs, decoded, cfg.examples)
    tracking.log_json(run_id, src_vocab, "src_vocab.json")
    tracking.log_json(run_id, trg_vocab, "trg_vocab.json")
    tracking.log_metrics(run_id, metrics)
    return metrics, table


def translations_markdown(sources: list, refs: list, decoded: dict, n: int) -> str:
    """The first n test sentences: source, reference and each decoding's translation."""
    cols = list(decoded)
    lines = ["| source | reference | " + " | ".join(cols) + " |", "|---" * (2 + len(cols)) + "|"]
    for i in range(min(n, len(sources))):
        lines.append(f"| {sources[i]} | {refs[i]} | " + " | ".join(decoded[c][i] for c in cols)
                     + " |")  # fmt: skip
    return "\n".join(lines) + "\n"


@task(name="register", cache_policy=NO_CACHE)
def register_task(run_id: str, model, vocab: StageOutput, config: Seq2SeqConfig,
                  subword: StageOutput | None = None) -> dict:  # fmt: skip
    """The model as the translator pyfunc (flows/translator.py), registered; its subword
    model travels with it."""
    from flows.translator import log_translator

    return log_translator(run_id, model, *read_vocabs(vocab), config, PIPELINE,
                          subword.file(MODEL) if subword else None)  # fmt: skip


@flow(name=PIPELINE, flow_run_name=dashboard.RunName(PIPELINE))
def seq2seq(
    config: Seq2SeqConfig | None = None,
    profile: str | None = None,
    overrides: list[str] | None = None,
    promote: bool | None = None,
) -> str:
    """Returns the MLflow run id."""
    config = resolve(PIPELINE, config, profile, overrides)
    d = config.data
    check_source(PIPELINE, config)  # your own data: read and checked before any stage
    tags = run_tags(fingerprint(config))
    with open_run(PIPELINE, config, tags) as run_id:
        rows = ingest(config)
        if d.incoming and (files := incoming_files()):
            from tasks.pairs import add_pairs

            rows = add_pairs(PIPELINE, rows, files)
        stages = [rows, *text_stages(config, rows)]
        tokens, vocab, encoded = stages[-3:]
        sub = subword_stage(stages)
        tracking.log_stages(run_id, stages)
        metrics = {"src_vocab_size": vocab.stats["src_vocab_size"],
                   "trg_vocab_size": vocab.stats["trg_vocab_size"],
                   "train_pairs": rows.stats["train_pairs"]}  # fmt: skip
        metrics |= {k: rows.stats[k] for k in ("new_pairs", "duplicate_pairs") if k in rows.stats}
        tracking.log_metrics(run_id, metrics)
        ckpt = recover.checkpoint_folder(PIPELINE, [encoded.fingerprint, vocab.fingerprint],
                                         config.train)  # fmt: skip
        meta = {"run_ids": [run_id], "pipeline": PIPELINE, "profile": config.profile}
        with recover.keep_model(PIPELINE, ckpt, config.train.epochs) as owned:  # errors name it
            model, fitted = train_task(encoded, vocab, config.train, run_id,
                                       str(ckpt) if owned else None, meta)  # fmt: skip
            scores, table = evaluate_task(model, rows, tokens, encoded, vocab, config.evaluate,
                                          config.train.batch_size, run_id, d.trg_lang, sub,
                                          config.tokenize.trg_model)  # fmt: skip
            metrics |= scores
            reg = register_task(run_id, model, vocab, config, sub)
        head = report_header("test translations", PIPELINE, reg["version"], config.profile,
                             PRIMARY_METRIC[0], scores[PRIMARY_METRIC[0]])  # fmt: skip
        tracking.log_text(run_id, head + table, "translations.md")
        metrics |= {"final_train_loss": fitted.history[-1]["train_loss"],
                    "best_val_loss": kept_val_loss(fitted), "tokens_per_sec": fitted.per_sec,
                    "model_version": reg["version"]}  # fmt: skip
        record = records.pipeline_record(PIPELINE, config.profile, run_id,
                                         tracking.run_link(run_id), stages, metrics)  # fmt: skip
        records.publish(f"{PIPELINE}-run", record, f"{PIPELINE} {config.profile}: run record")
        if config.profile == "parity":
            got = {k: metrics[k] for k in ("src_vocab_size", "trg_vocab_size")}
            got["parameters"] = count_parameters(model)
            check_parity(run_id, PIPELINE, PARITY, got, config.strict_parity)
        champion.finish(PIPELINE, config, run_id, metrics, record, promote)
    return run_id


# The notebook's figures (Laboratorio 4, part 2) that the parity profile must reproduce.
PARITY = [
    Check("src_vocab_size", 7_853),
    Check("trg_vocab_size", 5_893),
    Check("parameters", 13_898_501),
]


def load_translator(version: int | str | None = None):
    """(the Translator pyfunc of the champion or of `version`, its version number)."""
    from flows import translator

    v = version if version is not None else tracking.champion(PIPELINE)
    if v is None:
        raise LookupError("no seq2seq champion yet: run `seqflow run seq2seq` first")
    number = int(v.version if hasattr(v, "version") else v)
    return translator.load(number), number


@task(name="score", cache_policy=NO_CACHE)
def score(config: Seq2SeqConfig, version: int | str) -> float:
    """Test BLEU of registered model `version` on the test split of config's data (Multi30k's,
    or your own source's)."""
    rows = ingest(config, as_task=False)
    import pyarrow.parquet as pq

    table = pq.read_table(rows.file("test.parquet"))
    model, _ = load_translator(version)
    hyps, _ = model.translate(table.column("src").to_pylist())
    return corpus_bleu(hyps, table.column("trg").to_pylist())
