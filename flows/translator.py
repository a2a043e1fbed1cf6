r"""The seq2seq champion as an MLflow pyfunc: raw source-language text in (German for the
course), target-language text out (English).

The weights, both vocabularies, the languages, the tokenizer settings (each side's spaCy code
or model, or the SentencePiece model of a model with subword units) and the decoding settings
travel in the model's artifacts, so
`mlflow models serve -m models:/seq2seq@champion --env-manager local`
and `seqflow translate` load the same thing. The rules, for both: one output per input, in
order; a blank input gives a blank output; an input longer than `max_src_tokens` is cut, with
a warning naming it; a non-string or null input is refused, naming it (counted from 1). A line
break inside an input (U+2028, U+2029, \x0b, \x0c, \x1c-\x1e, \x85, \r, \n) is read as a
space, so no output holds one: N lines in, N lines out.
"""

import json
import logging
import re
from pathlib import Path

import numpy as np
import torch
from mlflow.pyfunc import PythonModel

from tasks.runtime import checkpoint

ENTRY = Path(__file__).with_name("serve_seq2seq.py")  # the models-from-code file
log = logging.getLogger("seqflow.translator")
BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")  # what splitlines() splits on


EXAMPLES = {"de": "Ein Mann fährt Fahrrad.", "en": "A man rides a bike."}  # the input example


class BadInput(ValueError):
    pass


class Translator(PythonModel):
    def load_context(self, context) -> None:
        self.load(context.artifacts)

    def load(self, artifacts: dict) -> None:
        from flows.config.seq2seq import Seq2SeqTrain
        from tasks.train.seq2seq import build_model
        from tasks.translation import load_tokenizer

        settings = json.loads(Path(artifacts["settings"]).read_text())
        self.src_vocab = json.loads(Path(artifacts["src_vocab"]).read_text())
        self.trg_vocab = json.loads(Path(artifacts["trg_vocab"]).read_text())
        self.tok, self.dec = settings["tokenize"], settings["decode"]
        self.languages = settings.get("languages") or {  # a model logged before they travelled
            "src": self.tok["src_model"] or "de", "trg": self.tok["trg_model"] or "en"}  # fmt: skip
        train = Seq2SeqTrain.model_validate(settings["train"])
        self.model = build_model(train, len(self.src_vocab), len(self.trg_vocab))
        self.model.load_state_dict(checkpoint.load(Path(artifacts["weights"])))
        self.model.eval()
        self.subword = None  # a model with subword units: its SentencePiece model travels too
        if self.tok.get("subword", "none") != "none":
            from tasks.subword import Subword

            self.subword = Subword.read(artifacts["subword"])
        else:
            self.tokenizer = load_tokenizer(self.tok["src_model"])

    def predict(self, context, model_input, params=None) -> list[str]:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        try:
            out, cut = self.translate(_texts(model_input))
        except BadInput as err:  # the scoring server answers 400 with this message
            raise MlflowException(str(err), INVALID_PARAMETER_VALUE) from err
        for i, message in cut:
            log.warning("input %d: %s", i + 1, message)
        return out

    def translate(self, lines: list, beam: int | None = None) -> tuple[list[str], list]:
        """(one translation per line, [(index of a line that was cut, what was cut)])."""
        from flows.serving import what
        from tasks.train.seq2seq import to_text, translate_ids
        from tasks.translation import encode, tokenize_texts

        for i, line in enumerate(lines, 1):
            if not isinstance(line, str):
                raise BadInput(f"input {i} is {what(line)}, not text: send strings")
        lines = [BREAKS.sub(" ", line) for line in lines]
        keep = [i for i, line in enumerate(lines) if line.strip()]
        texts = [lines[i] for i in keep]
        if self.subword:
            docs = self.subword.encode(texts, self.tok["lowercase"])
        else:
            docs = tokenize_texts(texts, self.tokenizer, self.tok["lowercase"], False)
        limit, warnings = self.dec["max_src_tokens"], []
        for i, doc in zip(keep, docs, strict=True):
            if len(doc) > limit:
                warnings.append((i, f"{len(doc)} tokens, cut to the first {limit}"))
                doc[limit:] = []
        if self.tok["reverse_src"]:
            docs = [d[::-1] for d in docs]
        ids = encode(docs, self.src_vocab)
        hyps = translate_ids(self.model, ids, torch.device("cpu"), self.dec["max_len"],
                             beam=beam or self.dec["beam"],
                             alpha=self.dec["length_penalty"])  # fmt: skip
        out = [""] * len(lines)
        for i, h in zip(keep, hyps, strict=True):
            words = [self.trg_vocab[t] for t in h]
            out[i] = BREAKS.sub(" ", to_text(words, self.languages["trg"], self.subword))
        return out, warnings


def _texts(model_input) -> list:
    """The values of a request as sent: a DataFrame's first column, a Series, a list or one
    str. The signature's type is Any, so MLflow hands 42 or null over as they are in every
    payload form (with type string it makes "42" and "None" of them in `inputs`/`instances`)."""
    from flows.serving import unfolded

    if isinstance(model_input, str):
        return [model_input]
    model_input = unfolded(model_input)
    if hasattr(model_input, "columns"):
        model_input = model_input[model_input.columns[0]]
    values = list(model_input.tolist() if hasattr(model_input, "tolist") else model_input)
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def input_lines(text: str) -> list[str]:
    r"""The lines of a file for `seqflow translate`: split on \n only (\r\n accepted), a final
    newline making no extra line; other line separators stay inside their line."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def log_translator(run_id: str, model, src_vocab, trg_vocab, config, name: str,
                   subword: Path | None = None):  # fmt: skip
    """Log the trained model as the pyfunc and register a new version: {version, uri}.
    subword: the SentencePiece model file of a model with subword units."""
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    from flows.serving import log_pyfunc

    d = config.data
    settings = {"train": config.train.model_dump(), "tokenize": config.tokenize.model_dump(),
                "decode": config.evaluate.model_dump(),
                "languages": {"src": d.src_lang, "trg": d.trg_lang}}  # fmt: skip
    signature = ModelSignature(Schema([ColSpec(AnyType(), "text")]),  # checked in translate()
                               Schema([ColSpec("string", "translation")]))  # fmt: skip
    jsons = {"settings": settings, "src_vocab": src_vocab, "trg_vocab": trg_vocab}
    sentence = EXAMPLES.get(d.src_lang) or " ".join(src_vocab[4:9])  # in the source language
    example = pd.DataFrame({"text": [sentence]})
    files = {"subword": subword} if subword else {}
    needs = ["spacy", "pandas"] + (["sentencepiece"] if subword else [])
    return log_pyfunc(run_id, name, ENTRY, model, jsons, signature, example, needs, files)


def load(version) -> Translator:
    """The Translator of registered seq2seq model version `version`."""
    import mlflow.pyfunc

    from tasks.engine import tracking

    tracking.client()
    return mlflow.pyfunc.load_model(f"models:/seq2seq/{version}").unwrap_python_model()
