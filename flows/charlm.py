"""The character-level language-model pipeline (Laboratorio: RNN, LSTM, GRU on Don Quijote).

ingest (Gutenberg markers) -> encode (characters) -> windows (Parquet)
       -> one child MLflow run per model kind: train, test perplexity, samples
       -> perplexity figure, the best next-character model registered
"""

import hashlib
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import LogFormatter  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from flows import champion, dashboard, writer  # noqa: E402
from flows.config import CharEval, CharLMConfig, flatten  # noqa: E402
from flows.pipelines import check_source, open_run, resolve, run_tags  # noqa: E402
from flows.recover import checkpoint_folder, keep_models  # noqa: E402
from tasks.chars import (  # noqa: E402
    UNKNOWN,
    check_incoming,
    check_incoming_own,
    encode_chars,
    encode_own,
    ingest_book,
    ingest_text,
    prepare,
    read_chars,
    read_prompts,
    replace_rare,
    window_chars,
    window_sections,
)
from tasks.data import incoming_files  # noqa: E402
from tasks.engine import records, tracking  # noqa: E402
from tasks.engine.parity import Check, check_parity  # noqa: E402
from tasks.engine.stage import run_logger  # noqa: E402
from tasks.incoming import data_fingerprint  # noqa: E402
from tasks.plots import integer_epochs, report_header, title  # noqa: E402
from tasks.runtime.loop import Build, Plan  # noqa: E402
from tasks.runtime.trainer import fit  # noqa: E402
from tasks.train.charlm import continue_text, overlapping, perplexity, read_split  # noqa: E402

PIPELINE = "charlm"
PRIMARY_METRIC = ("test_ppl", "min")
DESCRIPTIONS = {
    "lstm_bidir": "Bidirectional LSTM: its backward half reads the characters it is asked to "
    "predict, so it is not a next-character model and its test perplexity is not comparable "
    "with the others (it is never registered as the champion).",
}


def incoming(config: CharLMConfig) -> list:
    return incoming_files(PIPELINE, ".txt") if config.data.incoming else []


def own_data(config: CharLMConfig) -> dict:
    """Your own text: the text column (a .txt file is one document, not a row per line). Checked
    on the train split whole: one document is split by sections, not carved (ingest_text)."""
    wanted = {"text_column": (config.data.text_column, ("string",))}
    return {"wanted": wanted, "by_document": True, "whole": True}


def fingerprint(config: CharLMConfig) -> str:
    """What this config trains on (the book, the notebook_text choice, incoming texts; your own
    data: its source identity and mapping, the character limit, incoming texts' contents)."""
    d = config.data
    if d.own:
        from tasks.engine.stage import sha256_file
        from tasks.sources import data_fingerprint as source_fingerprint

        source = source_fingerprint(d, own_data(config)["wanted"])
        added = sorted(sha256_file(p) for p in incoming(config))
        if not added and d.limit_chars is None:
            return source
        parts = {"source": source, "limit_chars": d.limit_chars, "incoming": added}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    parts = [data_fingerprint(d.dataset, d.file, None, incoming(config)), d.notebook_text]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def own_stages(config: CharLMConfig, new_texts: list = (), as_tasks: bool = True) -> list:
    """Your own text's stages: ingest (sections, held-out split), encode (derived alphabet),
    windows. as_tasks False: the plain functions (outside a flow)."""
    d, call = config.data, (lambda t: t) if as_tasks else (lambda t: t.fn)
    book = call(ingest_text)(PIPELINE, d, config.windows.test_every,
                             own_data(config)["wanted"], new_texts)  # fmt: skip
    chars = call(encode_own)(PIPELINE, book, d.lowercase, d.min_char_count)
    return [book, chars, call(window_sections)(PIPELINE, chars, config.windows)]


def own_prompts(config: CharLMConfig, book, vocab: list[str]) -> list[str]:
    """The sampling prompts for your own text: the configured ones, or when those are the
    course's (Spanish) defaults, the first words of a few held-out sections; read as training
    reads the text (prepared, rare characters as the replacement symbol)."""
    given = config.evaluate.prompts
    if given == CharEval.model_fields["prompts"].default:
        given = read_prompts(book) or [vocab[0]]
    known = set(vocab) - {UNKNOWN}
    return [replace_rare(prepare(p, config.data.lowercase), known)[0] for p in given]


def incoming_check(config: CharLMConfig):
    """How an incoming text is checked at the door: the course's Spanish alphabet, or for your
    own data the alphabet derived from its training text (its stages, cached)."""
    if not config.data.own:
        return check_incoming
    _, chars, _ = own_stages(config, as_tasks=False)
    vocab, _ = read_chars(chars)
    return lambda path: check_incoming_own(path, vocab, config.data.lowercase)


def plain_stages(config: CharLMConfig, new_texts: list = ()) -> list:
    """The stages (book, characters, windows) as plain functions, from the stage cache when
    built before (outside a flow: score, tuning trials)."""
    d = config.data
    if d.own:
        return own_stages(config, new_texts, as_tasks=False)
    book = ingest_book.fn(PIPELINE, d.dataset, d.file, new_texts)
    chars = encode_chars.fn(PIPELINE, book, d.notebook_text)
    return [book, chars, window_chars.fn(PIPELINE, chars, config.windows)]


def tune_stages(config: CharLMConfig) -> list:
    """The stages a tuning trial reads (built once before the trials, then from cache)."""
    return plain_stages(config, incoming(config))


TUNE_METRIC = ("val_ppl", "min")
VALIDATION_SHARE = 0.1  # tuning: the share of training windows held out for validation


def window_overlap(w) -> int:
    """Training windows that share text with the next one's start (validation carving)."""
    return overlapping(w.length, 1 if w.split == "parity" else w.stride)


def tune_trial(config: CharLMConfig, run_id: str, monitor) -> float:
    """One tuning trial (flows/tune.py): the first next-character kind of train.kinds trained
    on the training windows less a validation block (tasks/train/charlm.carve_validation), its
    val_ppl reported to `monitor` each epoch. Never reads the test windows. Returns the last
    epoch's val_ppl."""
    from tasks.train.charlm import CharRecipe, carve_validation

    _, chars, wins = tune_stages(config)
    vocab, _ = read_chars(chars)
    train, valid = carve_validation(read_split(wins.path, "train"), VALIDATION_SHARE,
                                    window_overlap(config.windows))  # fmt: skip
    kind = next(k for k in config.train.kinds if k != "lstm_bidir")
    recipe = CharRecipe(kind, train, valid, len(vocab), config.train, held="val")
    tracking.log_metrics(run_id, {"train_windows": len(train), "val_windows": len(valid)})
    tracking.set_tags(run_id, {"model.kind": kind})
    _, fitted = fit(recipe, Plan.of(config.train, progress=False), run_id=run_id,
                    monitor=monitor)  # fmt: skip
    return fitted.series("val_ppl")[-1]


def fit_member(kind: str, wins, vocab_size: int, config, run_id: str, where: Path | None,
               meta: dict):  # fmt: skip
    """One model of `kind` trained by the runtime (checkpoints in `where`, resumed from them;
    None: no checkpoints), its epochs logged to `run_id`. Returns (model on the CPU, Fitted)."""
    build = Build("tasks.train.charlm:recipe",
                  {"windows": wins.path, "kind": kind, "vocab_size": vocab_size,
                   "cfg": config.train, "overlap": window_overlap(config.windows)})  # fmt: skip
    recipe, fitted = fit(build, Plan.of(config.train), checkpoints=where, run_id=run_id,
                         meta=meta)  # fmt: skip
    return recipe.model.cpu(), fitted


def fit_members(kind: str, wins, vocab_size: int, config, run_id: str, where: Path | None,
                test) -> tuple:  # fmt: skip
    """train.members models of `kind` (seeds seed, seed + 1, ...), each in its own MLflow run
    nested under `run_id` and its own checkpoint folder under `where`, as one CharEnsemble.
    Logs each member's held-out perplexity to `run_id` (test_ppl.member<k>). Returns (the
    ensemble, the first member's Fitted)."""
    from models.charlm import CharEnsemble

    cfg, models, fits = config.train, [], []
    for k in range(1, cfg.members + 1):
        member_cfg = config.model_copy(update={"train": cfg.model_copy(
            update={"seed": cfg.seed + k - 1, "members": 1})})  # fmt: skip
        tags = {"model.kind": kind, "member": str(k),
                "mlflow.note.content": f"{kind}: member {k} of {cfg.members} (seed "
                f"{member_cfg.train.seed}) of the ensemble in the run above"}  # fmt: skip
        params = {"model.kind": kind, "member": k, **flatten(member_cfg.train)}
        folder = None if where is None else where / f"member-{k}"
        with tracking.child_run(run_id, PIPELINE, f"{kind} member {k}", params,
                                tags) as member_run:  # fmt: skip
            meta = {"run_ids": [member_run, run_id], "pipeline": PIPELINE, "kind": kind}
            model, fitted = fit_member(kind, wins, vocab_size, member_cfg, member_run, folder,
                                       meta)  # fmt: skip
            ppl = perplexity(model, test, cfg.batch_size, "cpu")
            tracking.log_metrics(member_run, {"test_ppl": ppl}, step=cfg.epochs)
        tracking.log_metrics(run_id, {f"test_ppl.member{k}": ppl})
        run_logger().info("%s member %d: test perplexity %.3f", kind, k, ppl)
        models.append(model)
        fits.append(fitted)
    return CharEnsemble(models), fits[0]


@task(name="train-variant", cache_policy=NO_CACHE)
def train_variant(kind: str, wins, vocab: list[str], config, parent: str, data_fp: str,
                  where: Path | None, prompts: list[str] | None = None) -> dict:  # fmt: skip
    """One model kind in its own child run, trained by the runtime (checkpoints in `where`,
    resumed from them; None: no checkpoints); with train.members > 1 (next-character kinds),
    an ensemble of that many, each in a run nested under the kind's (its curves: the first
    member's)."""
    cfg = config.train
    tags = {"model.kind": kind, "mlflow.note.content": DESCRIPTIONS.get(kind, f"{kind} model"),
            "data_fingerprint": data_fp}  # fmt: skip
    with tracking.child_run(parent, PIPELINE, kind, {"model.kind": kind, **flatten(cfg)},
                            tags) as run_id:  # fmt: skip
        tracking.log_metrics(run_id, {"vocab_size": len(vocab)})
        test = read_split(wins.path, "test")
        if cfg.members > 1 and kind != "lstm_bidir":
            model, fitted = fit_members(kind, wins, len(vocab), config, run_id, where, test)
        else:
            meta = {"run_ids": [run_id, parent], "pipeline": PIPELINE, "kind": kind}
            model, fitted = fit_member(kind, wins, len(vocab), config, run_id, where, meta)
        final = perplexity(model, test, cfg.batch_size, "cpu")
        samples = {p: {"greedy": continue_text(model, vocab, p, config.evaluate.n_chars),
                       "sampled": continue_text(model, vocab, p, config.evaluate.n_chars,
                                                config.evaluate.temperature, seed=cfg.seed)}
                   for p in (config.evaluate.prompts if prompts is None else prompts)}  # fmt: skip
        tracking.log_metrics(run_id, {"test_ppl": final}, step=cfg.epochs)
        run_logger().info("%s: test perplexity %.3f, %.0f chars/s", kind, final, fitted.per_sec)
    hist = {"train_ppl": fitted.series("train_ppl"), "test_ppl": fitted.series("test_ppl")}
    return {"kind": kind, "run_id": run_id, "test_ppl": final, "hist": hist, "model": model,
            "samples": samples}  # fmt: skip


def checkpoint_folders(config: CharLMConfig, wins, vocab_size: int) -> dict[str, Path]:
    """Each kind's own checkpoint folder: the windows, its training settings (the list of
    other kinds is not one of them: a kind trains the same alone or with the others)."""
    cfg = config.train
    return {k: checkpoint_folder(PIPELINE, [wins.fingerprint],
                                 cfg.model_copy(update={"kinds": [k]}), k, vocab_size)
            for k in cfg.kinds}  # fmt: skip


def perplexity_figure(results: list[dict], heading: str, registered: str | None = None,
                      version=None):  # fmt: skip
    """One panel per model kind (train solid, test dashed, one log scale for all), the
    registered kind's panel framed in red and named so (heading: plots.title's)."""
    cols = min(len(results), 4)
    rows = -(-len(results) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(2.7 * cols, 6), 2.4 * rows + 1.3),
                             sharey=True, squeeze=False, layout="constrained")  # fmt: skip
    for ax, r in zip(axes.flat, results, strict=False):
        epochs = range(1, len(r["hist"]["train_ppl"]) + 1)
        ax.plot(epochs, r["hist"]["train_ppl"], color="tab:blue", label="train")
        ax.plot(epochs, r["hist"]["test_ppl"], "--", color="tab:orange", label="test")
        name, color = f"{r['kind']}: test {r['test_ppl']:.2f}", "black"
        if r["kind"] == registered:
            name, color = f"{name}\nregistered, version {version}", "tab:red"
            for spine in ax.spines.values():
                spine.set(color=color, linewidth=2)
        elif r["kind"] in DESCRIPTIONS:
            name += "\nnot comparable"
        ax.set_title(name, fontsize=9, color=color)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(LogFormatter())  # 30, not 3 x 10^1
        ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
        integer_epochs(ax)
    for ax in axes[:, 0]:
        ax.set_ylabel("perplexity (log scale)")
    for ax in axes.flat[len(results) :]:
        ax.set_visible(False)
    fig.suptitle(heading)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="outside lower center", ncols=2,
               fontsize=8)  # fmt: skip
    return fig


def samples_markdown(results: list[dict], registered: str | None = None) -> str:
    lines = ["| model | prompt | greedy | sampled |", "|---|---|---|---|"]
    for r in results:
        kind = f"**{r['kind']}** (registered)" if r["kind"] == registered else r["kind"]
        for prompt, s in r["samples"].items():
            cells = [x.replace("|", "\\|") for x in (prompt, s["greedy"], s["sampled"])]
            lines.append(f"| {kind} | `{cells[0]}` | `{cells[1]}` | `{cells[2]}` |")
    return "\n".join(lines) + "\n"


def log_reports(run_id: str, profile: str, results: list[dict], best: dict | None,
                reg: dict | None) -> None:  # fmt: skip
    """perplexity.png and samples.md, naming the registered kind (best) and its version."""
    kind, version = (best["kind"], reg["version"]) if best else (None, None)
    model = f"{PIPELINE} ({kind})" if kind else PIPELINE
    what = "perplexity per epoch, one panel per model kind"
    fig = perplexity_figure(results, title(what, PIPELINE, profile, model, version), kind, version)
    tracking.log_figure(run_id, fig, "perplexity.png")
    plt.close(fig)
    score = best["test_ppl"] if best else None
    head = report_header("samples", model, version, profile, PRIMARY_METRIC[0], score)
    tracking.log_text(run_id, head + samples_markdown(results, kind), "samples.md")


@flow(name=PIPELINE, flow_run_name=dashboard.RunName(PIPELINE))
def charlm(
    config: CharLMConfig | None = None,
    profile: str | None = None,
    overrides: list[str] | None = None,
    promote: bool | None = None,
) -> str:
    """Returns the parent MLflow run id."""
    config = resolve(PIPELINE, config, profile, overrides)
    check_source(PIPELINE, config)  # your own data: read and mapped before any stage or run
    d = config.data
    new_texts = incoming(config)
    data_fp = fingerprint(config)
    tags = run_tags(data_fp, incoming_files=len(new_texts))
    with open_run(PIPELINE, config, tags) as run_id:
        if d.own:
            book, chars, wins = stages = own_stages(config, new_texts)
        else:
            book = ingest_book(PIPELINE, d.dataset, d.file, new_texts)
            chars = encode_chars(PIPELINE, book, d.notebook_text)
            wins = window_chars(PIPELINE, chars, config.windows)
            stages = [book, chars, wins]
        tracking.log_stages(run_id, stages)
        vocab, _ = read_chars(chars)
        train, test = read_split(wins.path, "train"), read_split(wins.path, "test")
        metrics = {"vocab_size": len(vocab), "train_windows": len(train),
                   "test_windows": len(test)}  # fmt: skip
        prompts = reading = None
        if d.own:  # the alphabet's replacements and the held-out split, in the run
            metrics |= {k: chars.stats[k] for k in ("replaced_chars", "held_out_replaced_chars")}
            tracking.log_json(run_id, book.stats["split"], "split.json")
            tracking.set_tags(run_id, {"split.by": book.stats["split"]["by"]})
            prompts = own_prompts(config, book, vocab)
            reading = {"lowercase": d.lowercase, "unknown": UNKNOWN}
        tracking.log_metrics(run_id, metrics)
        tracking.log_json(run_id, vocab, "vocab.json")
        folders = checkpoint_folders(config, wins, len(vocab))
        with keep_models(folders, config.train.epochs) as where:
            results = [train_variant(k, wins, vocab, config, run_id, data_fp, where[k], prompts)
                       for k in config.train.kinds]  # fmt: skip
            causal = [r for r in results if r["kind"] != "lstm_bidir"]
            best = reg = None
            if causal:
                best = min(causal, key=lambda r: r["test_ppl"])
                reg = writer.register_task(best["run_id"], best["model"], vocab, config,
                                           prompts, reading)  # fmt: skip
                tracking.log_json(best["run_id"], vocab, "vocab.json")
                tracking.set_tags(run_id, {"best_kind": best["kind"]})
                metrics |= {"test_ppl": best["test_ppl"], "model_version": reg["version"]}
                tracking.log_metrics(run_id, {"test_ppl": best["test_ppl"]})
        log_reports(run_id, config.profile, results, best, reg)
        metrics |= {f"test_ppl.{r['kind']}": r["test_ppl"] for r in results}
        record = records.pipeline_record(PIPELINE, config.profile, run_id,
                                         tracking.run_link(run_id), stages, metrics)  # fmt: skip
        records.publish(f"{PIPELINE}-run", record, f"{PIPELINE} {config.profile}: run record")
        if config.profile == "parity" and not d.own:
            got = {"vocab_size": len(vocab), "vocab": "".join(vocab)}
            check_parity(run_id, PIPELINE, PARITY, got, config.strict_parity)
        champion.finish(PIPELINE, config, run_id, metrics, record, promote)
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
    wins = plain_stages(config)[2]
    model = tracking.load_model(PIPELINE, version)
    return perplexity(model, read_split(wins.path, "test"), config.train.batch_size, "cpu")
