"""charlm's config (character language models on Don Quijote): data, windows, train, evaluate;
its profiles.
"""

from typing import Literal

from pydantic import Field

from flows.config.base import Section, SourceSection, TrainConfig
from models.charlm_kinds import KINDS


class BookData(SourceSection):
    dataset: str = "quijote"
    text_column: str = Field("text", description="your own data: the column of texts")
    file: str = "2000-0.txt"
    notebook_text: bool = Field(
        True, description="the notebook's text: first chapter to end of file, licence included"
    )
    incoming: bool = Field(
        False, description="add data/incoming/charlm/*.txt to the training windows (retrain)"
    )
    # your own text only (the course's is always read as the notebook reads it)
    lowercase: bool = Field(True, description="your own text: lowercase it")
    min_char_count: int = Field(
        10,
        ge=1,
        description="your own text: characters seen fewer times in the training text "
        "become one replacement symbol (counted)",
    )
    section_pattern: str | None = Field(
        None,
        description="your own text in one document: a regex matching each section's "
        "heading line (e.g. '^BOOK [IVX]+'); every windows.test_every-th section is held out. "
        "Unset: BOOK/CHAPTER/PART headings when there are enough, else equal blocks",
    )
    limit_chars: int | None = Field(
        None, ge=1, description="your own text: read only this many characters (a quick slice)"
    )


class CharWindows(Section):
    split: Literal["parity", "chapters"] = Field(
        "parity",
        description="parity = the notebook's first N windows; chapters = held-out "
        "chapters, no window crosses a chapter",
    )
    length: int = Field(32, ge=1, description="input characters per window (+1 target)")
    n_train: int = Field(20480, ge=1, description="parity: training windows")
    n_test: int = Field(5120, ge=1, description="parity: test windows")
    stride: int = Field(1, ge=1, description="chapters: training window stride")
    test_every: int = Field(10, ge=2, description="chapters: every k-th chapter is held out")


class CharLMTrain(TrainConfig):
    epochs: int = Field(100, ge=1)
    kinds: list[Literal[KINDS]] = list(KINDS)
    hidden: int = Field(32, ge=1)
    n_layers: int = Field(1, ge=1, description="layers of the plain kinds (lstm_deep: 2)")
    dropout: float = Field(0.0, ge=0, lt=1)
    weight_drop: float = Field(
        0.0, ge=0, lt=1, description="torch kinds: DropConnect on hidden-to-hidden weights"
    )
    batch_size: int = Field(1024, ge=1)
    optimizer: Literal["adadelta", "adamw"] = "adadelta"
    lr: float = Field(4.0, gt=0, description="the notebook's Adadelta lr for all but rnn_scratch")
    lr_rnn_scratch: float = Field(1.0, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    clip: float = Field(1.0, gt=0)
    schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="cosine = linear warm-up, then a cosine decay to lr * lr_floor "
        "over every step of the run",
    )
    warmup: int = Field(0, ge=0, description="cosine: warm-up steps")
    lr_floor: float = Field(0.05, ge=0, le=1, description="cosine: the last step's share of lr")
    members: int = Field(
        1,
        ge=1,
        description="train this many models of each next-character kind (seeds seed, seed+1, "
        "...) and keep them as one ensemble: the mean of their next-character probabilities",
    )
    validation_share: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="hold out this share of the training windows (the "
        "last ones: whole training chapters) for validation; the epoch with the lowest val_ppl "
        "is the model kept. 0: no validation, the last epoch's model",
    )


class CharEval(Section):
    prompts: list[str] = ["levantose ", "sancho y quijote", "avellaneda "]
    n_chars: int = Field(30, ge=1)
    temperature: float = Field(0.8, gt=0)


class CharLMConfig(Section):
    pipeline: Literal["charlm"] = "charlm"
    profile: str = "parity"
    strict_parity: bool = Field(
        True, description="parity profile: a failed parity check fails the run (false: warns)"
    )
    data: BookData = BookData()
    windows: CharWindows = CharWindows()
    train: CharLMTrain = CharLMTrain()
    evaluate: CharEval = CharEval()


PROFILES: dict[str, dict] = {
    "parity": {},
    "quick": {
        "windows": {"n_train": 2048, "n_test": 512},
        "train": {"epochs": 3, "batch_size": 256, "hidden": 16},
    },
    "best": {
        "data": {"notebook_text": False},
        # sized for 2 CPU cores (~65 min): torch's LSTM runs faster here than a GRU of the
        # same width; batch 32 learns faster per second than 64 (validation probes, RESULTS).
        # Fixed windows overfit after ~12 epochs (dropout 0.25) or flatten (0.5, or weight
        # drop): training windows start every 32 characters instead (the held-out windows are
        # the same). One model stops improving on validation after ~3 epochs (3.07): two of
        # them (seeds 2023, 2024) as an ensemble, each 3 epochs in bf16 autocast (1.6x the
        # fp32 speed on this CPU, validation within 0.2% at equal steps; RESULTS)
        "windows": {"split": "chapters", "length": 128, "stride": 32},
        "train": {
            "kinds": ["lstm"],
            "hidden": 512,
            "n_layers": 2,
            "dropout": 0.25,
            "optimizer": "adamw",
            "lr": 3e-3,
            "weight_decay": 0.01,
            "batch_size": 32,
            "epochs": 3,
            "schedule": "cosine",
            "warmup": 200,
            "validation_share": 0.05,
            "members": 2,
            "precision": "bf16",
        },
    },
}

# `seqflow tune charlm`: the default search space (ranges over config keys; flows/tune.py)
TUNE_SPACE: dict[str, dict | list] = {
    "train.lr": {"low": 5e-4, "high": 1e-2, "log": True},
    "train.hidden": [128, 256, 384],
    "train.dropout": {"low": 0.0, "high": 0.3},
    "train.weight_decay": {"low": 1e-4, "high": 0.1, "log": True},
    "train.batch_size": [16, 32, 64],
}
