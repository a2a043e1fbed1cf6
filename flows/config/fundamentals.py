"""fundamentals' config (the NumPy RNN/LSTM and the torch LSTM on a^n b^n): data, train; its
profiles.
"""

from typing import Literal

from pydantic import Field, model_validator

from flows.config.base import Section, TrainConfig


class ToyData(Section):
    num_seq: int = Field(100, ge=3, description="a^n b^n EOS sequences, n uniform in 1..11")
    p_train: float = Field(0.8, gt=0, lt=1)
    p_val: float = Field(0.1, gt=0, lt=1)
    p_test: float = Field(0.1, gt=0, lt=1)

    @model_validator(mode="after")
    def _splits_fit(self):
        """Disjoint, non-empty splits: the notebook's slicing overlaps them past a sum of 1."""
        if self.p_train + self.p_val + self.p_test > 1 + 1e-9:
            raise ValueError("data.p_train + p_val + p_test must not exceed 1; lower one")
        for name in ("p_train", "p_val", "p_test"):
            if int(self.num_seq * getattr(self, name)) < 1:
                raise ValueError(f"data.{name} leaves no sequence of {self.num_seq}: raise it "
                                 "or data.num_seq")  # fmt: skip
        return self


class FundamentalsTrain(TrainConfig):
    kinds: list[Literal["numpy_rnn", "numpy_lstm", "torch_lstm"]] = [
        "numpy_rnn",
        "numpy_lstm",
        "torch_lstm",
    ]
    hidden: int = Field(50, ge=1)
    numpy_rnn_epochs: int = Field(2000, ge=1)
    numpy_rnn_lr: float = Field(3e-4, gt=0)
    numpy_lstm_epochs: int = Field(500, ge=1)
    numpy_lstm_lr: float = Field(0.1, gt=0)
    torch_epochs: int = Field(500, ge=1)
    torch_lr: float = Field(3e-4, gt=0, description="Adam")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "cpu", description="torch_lstm: one sequence per step, a GPU only adds latency"
    )
    checkpoint_every: int = Field(
        10, ge=1, description="epochs between checkpoints (one costs ~4% of a NumPy RNN epoch)"
    )
    notebook_gradients: bool = Field(
        True,
        description="the notebook's NumPy backward passes, quirks included (its graded "
        "values need them); false = the exact gradients",
    )


class FundamentalsConfig(Section):
    pipeline: Literal["fundamentals"] = "fundamentals"
    profile: str = "parity"
    strict_parity: bool = Field(
        True, description="parity profile: a failed parity check fails the run (false: warns)"
    )
    data: ToyData = ToyData()
    train: FundamentalsTrain = FundamentalsTrain()


PROFILES: dict[str, dict] = {
    "parity": {},
    "quick": {"train": {"numpy_rnn_epochs": 30, "numpy_lstm_epochs": 10, "torch_epochs": 10}},
    # numpy_rnn_lr 0.009 (the notebook's 3e-4): `seqflow tune fundamentals` (bench/RESULTS.md)
    "best": {"train": {"notebook_gradients": False, "numpy_rnn_lr": 0.009}},
}


def tune_space(config) -> dict[str, dict | list]:
    """`seqflow tune fundamentals`: the width and the learning rate of the kind a trial trains
    (the first of train.kinds; flows/tune.py)."""
    lr = {"numpy_rnn": ("train.numpy_rnn_lr", 1e-4, 1e-2),
          "numpy_lstm": ("train.numpy_lstm_lr", 1e-2, 0.5),
          "torch_lstm": ("train.torch_lr", 1e-4, 1e-2)}[config.train.kinds[0]]  # fmt: skip
    return {"train.hidden": [25, 50, 100], lr[0]: {"low": lr[1], "high": lr[2], "log": True}}
