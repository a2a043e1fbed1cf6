"""The word2vec champion as an MLflow pyfunc: raw text in, word vectors out.

Request: column `text` (string), one row per input; param `k` (how many neighbours, 1 to 100;
default the run's evaluate.k). Each text is tokenized as in training (the run's tokenize
section: lowercase, drop characters, stopwords, stemmer) and its tokens looked up:
- a text of one token (a word query, e.g. "school"): that word's vector and its k nearest
  words by cosine distance;
- a longer text: the mean of its known tokens' vectors (as the downstream classifier sees a
  tweet), no neighbours.
Response, one row per input, in order: `tokens` (the known tokens used), `unknown` (tokens
outside the vocabulary, ignored), `vector` (embed_size floats), `neighbors` (k words, or []),
`label` and `label_probability`: what the run's downstream classifier (logistic regression on
mean vectors, metric downstream_f1; label 1 = hate) says of the vector, null if it had none.
Refused with a 400 naming the input: a non-string or null text, a blank one, one without a
single token of the vocabulary; k outside 1..100.
"""

import json
from pathlib import Path

import numpy as np
from mlflow.pyfunc import PythonModel
from prefect import task
from prefect.cache_policies import NO_CACHE

from flows.serving import BadInput, column, log_pyfunc, number, refusing_bad_input, texts
from tasks.runtime import checkpoint

ENTRY = Path(__file__).with_name("serve_word2vec.py")  # the models-from-code file
MAX_K = 100


class Embedder(PythonModel):
    def load_context(self, context) -> None:
        self.load(context.artifacts)

    def load(self, artifacts: dict) -> None:
        from models.word2vec import SkipGramNS, Word2Vec
        from tasks.text import tweet_tokenizer

        self.settings = json.loads(Path(artifacts["settings"]).read_text())
        self.vocab = json.loads(Path(artifacts["vocab"]).read_text())
        self.index = {t: i for i, t in enumerate(self.vocab)}
        cls = Word2Vec if self.settings["model"] == "softmax" else SkipGramNS
        self.model = cls(len(self.vocab), self.settings["embed_size"])
        self.model.load_state_dict(checkpoint.load(Path(artifacts["weights"])))
        self.model.eval()
        self.vectors = self.model.word_vectors().float().numpy()
        self.tokenize = tweet_tokenizer(**self.settings["tokenize"])
        path = artifacts.get("classifier")
        self.classifier = json.loads(Path(path).read_text()) if path else None

    def predict(self, context, model_input, params=None):
        import pandas as pd

        with refusing_bad_input():
            k = number(params, "k", self.settings["k"], 1, MAX_K, whole=True)
            return pd.DataFrame(self.embed(texts(column(model_input, "text"), "text"), k))

    def embed(self, lines: list[str], k: int) -> list[dict]:
        from tasks.evaluation import nearest_words

        out = []
        for i, line in enumerate(lines, 1):
            tokens = self.tokenize(line)
            known = [t for t in tokens if t in self.index]
            if not known:
                why = (
                    f"none of its tokens {tokens} is in the vocabulary"
                    if tokens
                    else "nothing is left of it once stopwords and characters are dropped"
                )
                raise BadInput(f"input {i}: {line[:60]!r}: {why}; send words the model "
                               f"knows ({len(self.vocab)} words)")  # fmt: skip
            vector = self.vectors[[self.index[t] for t in known]].mean(axis=0)
            near = []
            if len(tokens) == 1:  # a word query
                near = nearest_words(self.vectors, self.vocab, known, k)[known[0]]
            label, p = self.label(vector)
            out.append({"tokens": known, "unknown": [t for t in tokens if t not in self.index],
                        "vector": vector.astype(float).tolist(), "neighbors": near,
                        "label": label, "label_probability": p})  # fmt: skip
        return out

    def label(self, vector: np.ndarray) -> tuple[int | None, float | None]:
        """The downstream classifier's label of a vector and its probability."""
        c = self.classifier
        if c is None:
            return None, None
        z = (vector - np.array(c["mean"])) / np.array(c["scale"])
        scores = np.array(c["coef"]) @ z + np.array(c["intercept"])
        if len(scores) == 1:  # two classes: the score is the second class's log-odds
            probs = np.array([1 / (1 + np.exp(scores[0])), 1 / (1 + np.exp(-scores[0]))])
        else:
            probs = np.exp(scores - scores.max())
            probs /= probs.sum()
        best = int(probs.argmax())
        return int(c["classes"][best]), float(probs[best])


def classifier_json(pipe) -> dict:
    """A fitted StandardScaler + LogisticRegression pipeline as plain numbers."""
    scaler, logreg = pipe[0], pipe[-1]
    return {"classes": logreg.classes_.tolist(), "mean": scaler.mean_.tolist(),
            "scale": scaler.scale_.tolist(), "coef": logreg.coef_.tolist(),
            "intercept": logreg.intercept_.tolist()}  # fmt: skip


@task(name="register", cache_policy=NO_CACHE)
def register_task(run_id: str, model, vocab, classifier, config) -> dict:
    """The trained model as this pyfunc, registered (vocab: the vocab stage's output)."""
    from tasks.vocab import read_vocab

    return log_embedder(run_id, model, read_vocab(vocab)[0], classifier, config, config.pipeline)


def log_embedder(run_id: str, model, id2tok: list[str], classifier, config, name: str) -> dict:
    """Log the trained model as the pyfunc and register a new version: {version, uri}.
    classifier: the run's downstream pipeline (tasks/evaluation.py), or None."""
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import AnyType, Array

    from tasks.text import stopword_set, tweet_tokenizer

    tok = config.tokenize.model_dump()
    tok["stopwords"] = sorted(stopword_set(tok["stopwords"])) if tok["stopwords"] else []
    settings = {"model": config.train.model, "embed_size": config.train.embed_size,
                "k": config.evaluate.k, "tokenize": tok}  # fmt: skip
    signature = ModelSignature(
        Schema([ColSpec(AnyType(), "text")]),  # checked by predict(), in every payload form
        Schema([ColSpec(Array("string"), "tokens"), ColSpec(Array("string"), "unknown"),
                ColSpec(Array("double"), "vector"), ColSpec(Array("string"), "neighbors"),
                ColSpec("long", "label", required=False),
                ColSpec("double", "label_probability", required=False)]),
        ParamSchema([ParamSpec("k", "long", config.evaluate.k)]),
    )  # fmt: skip
    tokenize = tweet_tokenizer(**tok)
    words = [t for t in id2tok if tokenize(t) == [t]][:3]  # words that survive tokenizing
    example = pd.DataFrame({"text": [words[0], " ".join(words)]})
    jsons = {"settings": settings, "vocab": id2tok}
    if classifier is not None:
        jsons["classifier"] = classifier_json(classifier)
    return log_pyfunc(run_id, name, ENTRY, model, jsons, signature, example, ["nltk", "pandas"])
