"""word2vec's config (Laboratorio 4 part 1): data, tokenize, vocab, windows, train, evaluate; its
profiles.
"""

from typing import Literal

from pydantic import Field, field_validator, model_validator

from flows.config.base import Section, SourceSection, TrainConfig


class DataSection(SourceSection):
    dataset: str = "tweets_hate_speech"
    text_column: str = Field("tweet", description="your own data: the column of texts")
    label_column: str | None = Field(
        "label", description="your own data: class labels for downstream F1, or null (none)"
    )
    file: str = "train.csv"
    limit_rows: int | None = Field(None, ge=1, description="use only the first N rows")
    incoming: bool = Field(
        False, description="append the CSVs in data/incoming/<pipeline>/ (retrain sets it)"
    )


# Your own data: letters of any alphabet (lowercased) and @ # kept, digits, _ and the rest dropped;
# the course's [^a-z@# ] would strip every accented letter (é, ñ, ü) and every non-Latin word.
UNICODE_DROP = r"[^\w@# ]|[\d_]"
NONE = ("none", "null", "")


class TokenizeSection(Section):
    lowercase: bool = True
    drop_pattern: str = Field(
        r"[^a-z@# ]",
        description="characters removed before splitting (your own data: default "
        f"{UNICODE_DROP}, letters of any alphabet kept)",
    )
    language: str = Field(
        "english",
        description="NLTK language name: the Snowball stemmer's and (unless tokenize.stopwords "
        "is set) the stopword list's; none = no stemmer, no stopwords",
    )
    stopwords: str | None = Field(
        "english", description="NLTK stopword list (default: tokenize.language's), or none"
    )
    stemmer: Literal["snowball", "none"] = "snowball"

    @field_validator("language", "stopwords")
    @classmethod
    def _none(cls, value):
        return None if value is None or value.strip().lower() in NONE else value.strip().lower()

    @field_validator("language")
    @classmethod
    def _known(cls, value):
        from nltk.stem.snowball import SnowballStemmer

        if value is not None and value not in SnowballStemmer.languages:
            raise ValueError(
                f"unknown language {value!r}: use one of NLTK's Snowball languages "
                f"({', '.join(SnowballStemmer.languages)}) or none"
            )
        return value

    @model_validator(mode="after")
    def _follow_language(self):
        """Stopwords not set explicitly follow tokenize.language (course: english, as before);
        no language means no stemmer."""
        if "stopwords" not in self.model_fields_set and self.stopwords == "english":
            self.stopwords = self.language
        if self.language is None:
            self.stemmer = "none"
        return self


class VocabSection(Section):
    min_count: int = Field(11, ge=1, description="keep tokens seen at least this often (>10)")


class WindowSection(Section):
    size: int = Field(3, ge=1, description="context positions on each side")
    shard_rows: int = Field(1 << 18, ge=1024, description="pairs per Parquet shard")


class Word2VecTrain(TrainConfig):
    model: Literal["softmax", "sgns"] = Field(
        "softmax", description="softmax = the notebook's network; sgns = skip-gram, neg. sampling"
    )
    embed_size: int = Field(50, ge=1)
    # The notebook steps AdamW(lr 3e-4) once per pair (2.6M steps, ~20 min an epoch on 2 cores).
    # Batches of 16,384 pairs take 53 steps an epoch; the lr grows to 0.05 to cover the same
    # ground (sweep in bench/RESULTS.md).
    batch_size: int = Field(16384, ge=1)
    lr: float = Field(0.05, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    negatives: int = Field(5, ge=1, description="sgns: negative samples per pair")
    unigram_power: float = Field(0.75, description="sgns: noise distribution exponent")
    kernel: Literal["auto", "torch", "c", "numba"] = Field(
        "auto",
        description="sgns on CPU: c = the per-pair SGD loop built at install (models/sgns.c), "
        "numba = the same loop in numba; auto picks c, else numba, on CPU; torch = minibatch "
        "SparseAdam (always on GPU)",
    )
    subsample: float = Field(
        0.0, ge=0, description="frequent-word subsampling (word2vec's 'sample')"
    )
    dynamic_window: bool = Field(
        False,
        description="word2vec's shrinking window: a pair at distance d is used with "
        "probability (w - d + 1) / w each epoch",
    )
    nproc: int = Field(
        1,
        ge=1,
        description="data-parallel processes (DDP; softmax model): each rank trains on "
        "its slice of every global batch of batch_size pairs",
    )


class EvalSection(Section):
    words: list[str] = ["good", "bad", "school", "day"]
    k: int = Field(10, ge=1)
    test_size: float = Field(0.2, gt=0, lt=1, description="downstream held-out fraction")
    split_seed: int = 2023
    positive_label: int | str = Field(
        1,
        description="two classes: the label whose F1 is downstream_f1 (its value in the data, "
        "e.g. hate); more classes: macro F1",
    )


class Word2VecConfig(Section):
    pipeline: Literal["word2vec"] = "word2vec"
    profile: str = "parity"
    strict_parity: bool = Field(
        True, description="parity profile: a failed parity check fails the run (false: warns)"
    )
    data: DataSection = DataSection()
    tokenize: TokenizeSection = TokenizeSection()
    vocab: VocabSection = VocabSection()
    windows: WindowSection = WindowSection()
    train: Word2VecTrain = Word2VecTrain()
    evaluate: EvalSection = EvalSection()

    @model_validator(mode="after")
    def _own_text(self):
        """Your own data: a drop pattern that keeps letters of any alphabet, unless one is set
        (the course's data keeps the notebook's pattern)."""
        if self.data.own and "drop_pattern" not in self.tokenize.model_fields_set:
            self.tokenize = self.tokenize.model_copy(update={"drop_pattern": UNICODE_DROP})
        return self


PROFILES: dict[str, dict] = {
    "parity": {},
    "quick": {
        "data": {"limit_rows": 3000},
        "vocab": {"min_count": 3},
        "train": {"epochs": 2, "batch_size": 1024, "lr": 0.01},
    },
    "best": {
        # window 5, min count 5, lr 0.1: `seqflow tune word2vec` (bench/RESULTS.md, Tuning);
        # downstream F1 0.448 vs 0.406 with the notebook's window 3, min count 11, lr 0.05
        "vocab": {"min_count": 5},
        "windows": {"size": 5},
        "train": {
            "model": "sgns",
            "embed_size": 100,
            "epochs": 5,
            "batch_size": 4096,
            "lr": 0.1,
            "negatives": 5,
            # word2vec's and gensim's defaults: together they skip ~45% of the pairs
            "subsample": 1e-3,
            "dynamic_window": True,
        },
    },
}

# `seqflow tune word2vec`: the default search space (ranges over config keys; flows/tune.py)
TUNE_SPACE: dict[str, dict | list] = {
    "train.lr": {"low": 0.02, "high": 0.2, "log": True},
    "train.negatives": [3, 5, 10, 15],
    "train.subsample": [0.0001, 0.001, 0.01],
    "windows.size": [2, 3, 5],
    "vocab.min_count": [3, 5, 11],
}
