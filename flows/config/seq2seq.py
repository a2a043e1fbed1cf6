"""seq2seq's config (German -> English on Multi30k): data, tokenize, vocab, train, evaluate; its
profiles.
"""

from typing import Literal

from pydantic import Field, model_validator

from flows.config.base import Section, SourceSection, TrainConfig


class ParallelData(SourceSection):
    dataset: str = "multi30k"
    src_lang: str = "de"
    trg_lang: str = "en"
    translation_column: str = Field(
        "translation", description="your own data: a {lang: text} column (the datasets way)"
    )
    src_column: str | None = Field(None, description="or a plain column of source texts")
    trg_column: str | None = Field(None, description="and one of target texts")
    limit_train: int | None = Field(None, ge=1, description="use only the first N train pairs")
    incoming: bool = Field(
        False, description="append the new pairs of data/incoming/seq2seq/*.tsv (retrain sets it)"
    )


class ParallelTokenize(Section):
    src_model: str | None = Field(
        None, description="spaCy language code (blank) or model name; unset = data.src_lang"
    )
    trg_model: str | None = Field(
        None, description="spaCy language code (blank) or model name; unset = data.trg_lang"
    )
    lowercase: bool = True
    reverse_src: bool = Field(True, description="feed the source reversed, as the notebook")
    subword: Literal["none", "sentencepiece"] = Field(
        "none",
        description="sentencepiece: one joint subword vocabulary learnt from the train "
        "split's raw text (tasks/subword.py): cased unless lowercase, no <unk> (byte fallback), "
        "translations decoded to plain text; none: spaCy words, vocab.min_freq",
    )
    subword_vocab: int = Field(8000, ge=300, description="sentencepiece: pieces at most")
    subword_type: Literal["unigram", "bpe"] = Field("unigram", description="sentencepiece model")


class ParallelVocab(Section):
    min_freq: int = Field(2, ge=1)


class Seq2SeqTrain(TrainConfig):
    model: Literal["lstm", "attention", "transformer"] = Field(
        "lstm",
        description="lstm = the notebook's; attention = Bahdanau, packed, masked; transformer "
        "= pre-norm encoder-decoder (emb_dim = width, hid_dim = feed-forward, n_layers each side)",
    )
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(128, ge=1)
    emb_dim: int = Field(256, ge=1)
    hid_dim: int = Field(512, ge=1)
    n_layers: int = Field(2, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)
    init_range: float = Field(0.08, gt=0)
    lr: float = Field(1e-3, gt=0, description="Adam (the notebook's default lr)")
    clip: float = Field(1.0, gt=0)
    teacher_forcing: float = Field(0.5, ge=0, le=1)
    heads: int = Field(8, ge=1, description="transformer: attention heads")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="transformer")
    warmup: int = Field(1000, ge=1, description="transformer: linear warm-up steps to lr")
    max_tokens: int | None = Field(
        None, ge=1, description="token-budget batches (sentences x longest side); else batch_size"
    )
    average_last: int = Field(0, ge=0, description="average the last N epochs' weights")
    compile: bool = Field(False, description="torch.compile the training loss (GPU speed-up)")
    bucket: bool = Field(True, description="batches of similar lengths (BucketIterator)")


class TranslateEval(Section):
    max_len: int = Field(50, ge=1)
    beam: int = Field(5, ge=1, description="beam width (transformer; 1 = greedy)")
    length_penalty: float = Field(0.6, ge=0, description="GNMT alpha for the beam's winner")
    max_src_tokens: int = Field(128, ge=1, description="longer inputs are cut, with a warning")
    examples: int = Field(20, ge=0)


class Seq2SeqConfig(Section):
    pipeline: Literal["seq2seq"] = "seq2seq"
    profile: str = "parity"
    strict_parity: bool = Field(
        True, description="parity profile: a failed parity check fails the run (false: warns)"
    )
    data: ParallelData = ParallelData()
    tokenize: ParallelTokenize = ParallelTokenize()
    vocab: ParallelVocab = ParallelVocab()
    train: Seq2SeqTrain = Seq2SeqTrain()
    evaluate: TranslateEval = TranslateEval()

    @model_validator(mode="after")
    def _tokenizers_follow_the_languages(self):
        """An unset tokenize.src_model/trg_model is the data's language code (the course's de
        and en), filled here so every stage, the MLflow params and the pyfunc see the code."""
        tok = self.tokenize
        if tok.src_model is None or tok.trg_model is None:
            self.tokenize = tok.model_copy(update={
                "src_model": tok.src_model or self.data.src_lang,
                "trg_model": tok.trg_model or self.data.trg_lang,
            })  # fmt: skip
        return self


PROFILES: dict[str, dict] = {
    "parity": {},
    "quick": {
        "data": {"limit_train": 2000},
        "train": {
            "epochs": 2,
            "batch_size": 64,
            "emb_dim": 32,
            "hid_dim": 64,
            "n_layers": 2,
            "dropout": 0.1,
            "lr": 0.005,
        },
        "evaluate": {"max_len": 30},
    },
    "attention": {
        "train": {
            "model": "attention",
            "epochs": 6,
            "emb_dim": 256,
            "hid_dim": 512,
            "dropout": 0.5,
        },
    },
    "best": {
        # cased text in one joint SentencePiece vocabulary (no <unk>, plain-text output)
        "tokenize": {
            "reverse_src": False,
            "lowercase": False,
            "subword": "sentencepiece",
            "subword_type": "bpe",
            "subword_vocab": 8000,
        },
        "train": {
            "model": "transformer",
            "epochs": 20,
            "emb_dim": 256,
            "hid_dim": 512,
            "n_layers": 3,
            "heads": 8,
            "dropout": 0.2,
            "lr": 1e-3,
            "warmup": 800,
            "clip": 1.0,
            "max_tokens": 2048,
            "teacher_forcing": 1.0,
            "average_last": 5,
        },
    },
}

# `seqflow tune seq2seq`: the default search space (ranges over config keys; flows/tune.py)
TUNE_SPACE: dict[str, dict | list] = {
    "train.lr": {"low": 3e-4, "high": 2e-3, "log": True},
    "train.dropout": {"low": 0.1, "high": 0.4},
    "train.warmup": [400, 800, 1600],
    "train.label_smoothing": [0.0, 0.1, 0.2],
}
