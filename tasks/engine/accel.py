"""GPU fast paths for the training loops: mixed precision, pinned host memory, torch.compile
and cuDNN. Each is a no-op where the device cannot use it, so the same loop runs on a CPU.
Device choice itself is tasks/train/word2vec.py::pick_device (cuda, then mps, then cpu, or forced by
`train.device`)."""

from contextlib import nullcontext

import numpy as np
import torch


def bf16_supported(device: torch.device | str) -> bool:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # oneDNN's bf16 kernels (its LSTM has none without AVX512-BF16)
        return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    return False


def autocast(device: torch.device | str, precision: str):
    """bf16 autocast where the device supports it; fp32 (no context) otherwise."""
    device = torch.device(device)
    if precision == "bf16" and bf16_supported(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"unknown precision {precision!r}: use fp32 or bf16")
    return nullcontext()


def to_device(array: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Host array -> device tensor; to a GPU through pinned memory, without blocking."""
    tensor = torch.as_tensor(array)
    if torch.device(device).type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def use_cudnn(device: torch.device | str) -> None:
    """cuDNN kernels for torch.nn recurrent layers, autotuned for the shapes seen."""
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.enabled = True
        torch.backends.cudnn.benchmark = True


def compiled(fn, enabled: bool, backend: str = "inductor"):
    """`fn` (a module or a function) through torch.compile when enabled; dynamic shapes, since
    batches differ in length."""
    return torch.compile(fn, backend=backend, dynamic=True) if enabled else fn
