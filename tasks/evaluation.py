"""Evaluating word vectors: nearest neighbours, the loss curve, a downstream classifier."""

import json

import numpy as np
from matplotlib.figure import Figure
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.engine.stage import StageOutput, run_logger
from tasks.plots import integer_epochs, legend_outside
from tasks.vocab import encode_docs, read_encoded, read_vocab


def nearest_words(
    vectors: np.ndarray, id2tok: list[str], words: list[str], k: int = 10
) -> dict[str, list[str]]:
    """The k nearest tokens of each word by cosine distance (itself excluded); unknown words
    are left out."""
    tok2id = {t: i for i, t in enumerate(id2tok)}
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1, norms)

    def nearest(idx: int) -> list[str]:
        dist = 1.0 - unit @ unit[idx]  # [V] cosine distances
        dist[idx] = np.inf
        return [id2tok[i] for i in np.argsort(dist, kind="stable")[:k]]

    return {word: nearest(tok2id[word]) for word in words if word in tok2id}


def loss_figure(epoch_loss: list[float], heading: str = "training loss") -> Figure:
    """Mean training loss per epoch (heading: plots.title's). Not a pyplot figure: no backend
    to choose, nothing to close."""
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    ax.plot(np.arange(1, len(epoch_loss) + 1), epoch_loss, "r-o", label="training loss")
    ax.set(ylabel="mean cross-entropy (nats)", title=heading)
    integer_epochs(ax)
    legend_outside(ax)
    return fig


def label_codes(labels, positive=1) -> tuple[np.ndarray, dict, int | None]:
    """(integer labels, {label as in the data: its integer}, the positive class's integer).

    Labels are numbered in sorted order (the course's 0/1 stay 0/1; "hate"/"ok" become 0/1).
    Two classes: `positive` (evaluate.positive_label, as the data writes it; a number given for
    string labels is matched as text) names the class whose F1 is reported; more classes: None
    (macro F1). Rows without a label are coded -1 and left out of the downstream evaluation."""
    values = list(np.asarray(labels, dtype=object))
    known = sorted({v for v in values if v is not None}, key=lambda v: (str(type(v)), v))
    mapping = {v: i for i, v in enumerate(known)}
    codes = np.array([mapping.get(v, -1) if v is not None else -1 for v in values], np.int64)
    if len(known) != 2:
        return codes, mapping, None
    by_text = {str(v): i for v, i in mapping.items()}
    if positive in mapping:
        return codes, mapping, mapping[positive]
    if str(positive) in by_text:
        return codes, mapping, by_text[str(positive)]
    raise EvaluationSplitError(
        f"evaluate.positive_label={positive!r} is not one of the labels "
        f"({', '.join(map(repr, known))}); set --set evaluate.positive_label=<one of them>"
    )


def downstream_f1(
    vectors: np.ndarray, ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray, cfg
) -> float:
    """F1 of the positive (hate) class: logistic regression on mean-pooled document vectors,
    trained and scored on a fixed stratified split of the labelled rows (cfg: the evaluate
    section, its test_size and split_seed)."""
    return downstream_classifier(vectors, ids, offsets, labels, cfg)[0]


def downstream_classifier(
    vectors: np.ndarray, ids: np.ndarray, offsets: np.ndarray, labels: np.ndarray, cfg,
    pos_label: int | None = 1,
) -> tuple[float, object]:  # fmt: skip
    """(downstream_f1, the fitted scikit-learn pipeline: scaler, logistic regression).
    pos_label: the class whose F1 is reported; None: macro F1 over the classes. Rows labelled
    -1 (label_codes: no label) are left out."""
    from sklearn.model_selection import train_test_split

    features, labels = doc_features(vectors, ids, offsets, labels)
    x_tr, x_te, y_tr, y_te = train_test_split(
        features, labels, test_size=cfg.test_size, random_state=cfg.split_seed, stratify=labels
    )
    return _fit_score(x_tr, y_tr, x_te, y_te, pos_label)


def doc_features(vectors, ids, offsets, labels) -> tuple[np.ndarray, np.ndarray]:
    """(mean-pooled document vectors, labels) of the labelled rows (-1: no label, left out)."""
    lengths = np.diff(offsets)  # a document's vector: the mean of its tokens' (0 for none)
    sums = np.zeros((len(lengths), vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, np.repeat(np.arange(len(lengths)), lengths), vectors[ids])
    features = sums / np.maximum(lengths, 1)[:, None]
    if (labels == -1).any():  # rows without a label
        features, labels = features[labels != -1], labels[labels != -1]
    return features, labels


def validation_f1(vectors, ids, offsets, labels, cfg, pos_label: int | None = 1) -> float:
    """Tuning: downstream F1 on a validation part of the classifier's training rows. The same
    stratified split as downstream_classifier sets its test rows aside (never scored here);
    the training rows are split again (same test_size and seed): fit on one part, F1 on the
    other."""
    from sklearn.model_selection import train_test_split

    features, labels = doc_features(vectors, ids, offsets, labels)
    split = {"test_size": cfg.test_size, "random_state": cfg.split_seed}
    x_tr, _, y_tr, _ = train_test_split(features, labels, stratify=labels, **split)
    x_fit, x_val, y_fit, y_val = train_test_split(x_tr, y_tr, stratify=y_tr, **split)
    return _fit_score(x_fit, y_fit, x_val, y_val, pos_label)[0]


def _fit_score(x_tr, y_tr, x_te, y_te, pos_label) -> tuple[float, object]:
    """Scaler + balanced logistic regression fit on (x_tr, y_tr); its F1 on (x_te, y_te)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = LogisticRegression(max_iter=2000, class_weight="balanced")
    pipe = make_pipeline(StandardScaler(), model).fit(x_tr, y_tr)
    predicted = pipe.predict(x_te)
    if pos_label is None:
        return float(f1_score(y_te, predicted, average="macro")), pipe
    return float(f1_score(y_te, predicted, pos_label=pos_label)), pipe


class EvaluationSplitError(ValueError):
    """The data cannot give the downstream evaluation's stratified split."""


def check_evaluation_split(rows, cfg) -> None:
    """downstream_f1 needs a stratified split of the labelled rows: two classes or more, each
    with 2 rows or more, and both parts at least one row per class. Checked on the ingested
    rows, before training, instead of scikit-learn failing after it."""
    import math

    import pyarrow.parquet as pq

    labels = pq.read_table(rows.file("rows.parquet"), columns=["label"]).column(0).to_pylist()
    labels = [c for c in labels if c is not None]  # rows without a label are not evaluated
    label_codes(labels, getattr(cfg, "positive_label", 1))  # a positive label that is there
    counts = {c: labels.count(c) for c in sorted(set(labels))}
    n, k = len(labels), len(counts)
    test = math.ceil(cfg.test_size * n)
    shown = ", ".join(f"label {c}: {m} row(s)" for c, m in counts.items())
    problem = None
    if k < 2:
        problem = "the rows hold one class only"
    elif min(counts.values()) < 2:
        problem = "a class has a single row"
    elif test < k or n - test < k:
        problem = f"evaluate.test_size={cfg.test_size} leaves a part with fewer rows than classes"
    if problem:
        raise EvaluationSplitError(
            f"downstream evaluation cannot split {n} rows ({shown}): {problem}, and its "
            "stratified split needs at least 2 rows of each of 2 classes; use more rows "
            "(raise or unset data.limit_rows) or change evaluate.test_size. Nothing was trained"
        )


def score_embeddings(
    vectors: np.ndarray, id2tok: list[str], docs: list[list[str]], labels: np.ndarray, cfg
) -> float:
    """downstream_f1 of any model's vectors on the same token lists: each model encodes them
    with its own vocabulary, so models with different vocabularies are compared fairly."""
    ids, offsets = encode_docs(docs, {t: i for i, t in enumerate(id2tok)})
    codes, _, positive = label_codes(labels, getattr(cfg, "positive_label", 1))
    return downstream_classifier(vectors, ids, offsets, codes, cfg, positive)[0]


def probe_words(words: list[str], id2tok: list[str], k: int = 4) -> tuple[list[str], bool]:
    """(the words whose neighbours are shown, whether they are the configured ones): the
    configured evaluate.words, or, when none of them is in the vocabulary (your own corpus,
    another language), its k most frequent tokens."""
    known = set(id2tok)
    if any(w in known for w in words):
        return list(words), True
    return list(id2tok[:k]), False


NO_LABELS = "not computed: the data has no label column (data.label_column is null)"


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(model, vocab: StageOutput, encoded: StageOutput, cfg, run_id: str) -> dict:
    """Neighbours of the probe words and downstream F1, logged to the run (the flow logs the
    loss curve once the model's version is known)."""
    from tasks.engine import tracking

    logger = run_logger()
    id2tok, _ = read_vocab(vocab)
    vectors = model.word_vectors().float().cpu().numpy()
    words, configured = probe_words(cfg.words, id2tok)
    if not configured:
        logger.info("none of evaluate.words %s is in the vocabulary: neighbours of the most "
                    "frequent tokens %s instead", cfg.words, words)  # fmt: skip
    neighbours = nearest_words(vectors, id2tok, words, cfg.k)
    for word in words:
        logger.info("%s: %s", word, neighbours.get(word, "(not in the vocabulary)"))
    tracking.log_json(run_id, id2tok, "vocab.json")
    tracking.log_json(run_id, neighbours, "neighbors.json")
    ids, offsets, table = read_encoded(encoded)
    if "label" not in table.column_names:  # your own corpus without labels
        logger.info("downstream_f1 %s", NO_LABELS)
        tracking.set_tags(run_id, {"downstream_f1": NO_LABELS})
        return {"neighbors": neighbours, "downstream_f1": None, "classifier": None}
    labels, mapping, positive = label_codes(table.column("label").to_pylist(), cfg.positive_label)
    if all(k == v for k, v in mapping.items()):  # the course's 0/1 stay as they are
        mapping = None
    f1, classifier = downstream_classifier(vectors, ids, offsets, labels, cfg, positive)
    which = "macro over the classes" if positive is None else f"class {cfg.positive_label!r}"
    logger.info("downstream_f1 (%s, logistic regression on mean vectors): %.4f", which, f1)
    if mapping is not None:
        shown = {str(k): v for k, v in mapping.items()}
        logger.info("labels as integers (sorted order): %s", shown)
        tracking.log_json(run_id, shown, "label_mapping.json")
        tracking.set_tags(run_id, {"label_mapping": json.dumps(shown, ensure_ascii=False)})
    tracking.log_metrics(run_id, {"downstream_f1": f1})
    return {"neighbors": neighbours, "downstream_f1": f1, "classifier": classifier,
            "label_mapping": mapping}  # fmt: skip
