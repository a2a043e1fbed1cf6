"""Numerical faults in training loops: a NaN or infinite loss stops training at once."""

import math


class NonFiniteLoss(FloatingPointError):
    """The training loss became NaN or infinite; `epoch` and `step` are 1-based."""

    def __init__(self, value: float, epoch: int, step: int, where: str = "", kept=None):
        self.value, self.epoch, self.step = value, epoch, step
        msg = f"{where}training loss became {value} at epoch {epoch}, step {step}"
        if kept:
            msg += f"; the last good checkpoint is kept at {kept}"
        else:
            msg += "; no checkpoint was written before it"
        super().__init__(msg + " (lower the learning rate or check the input data)")


def check_finite(loss, epoch: int, step: int, where: str = "", kept=None) -> float:
    """The loss as a float; raises NonFiniteLoss (0-based epoch/step in, 1-based out)."""
    value = float(loss)  # a tensor's .item()
    if not math.isfinite(value):
        raise NonFiniteLoss(value, epoch + 1, step + 1, where, kept)
    return value
