"""The fused recurrence kernels (models/cells.c): compiled on first use with the system C
compiler, cached, and loaded with ctypes. They split the batch rows over OpenMP threads; the
library is loaded after torch, so its libgomp is torch's own (same soname) and the kernels
share torch's thread pool instead of competing with its spinning workers.

`library()` returns None, with one warning, when the kernels cannot be used: no C compiler
(`cc`, or $CC), a failed build, or SEQFLOW_KERNELS=0. The scratch cells then run their
torch formulation (models/recurrence.py), which computes the same function.

The build goes to $SEQFLOW_KERNEL_CACHE (default ~/.cache/seqflow/kernels) under a name that
hashes the source, the flags, the compiler and this CPU's instruction sets, through a
temporary file and an atomic rename, so concurrent first uses never load a half-written file.
-ffast-math is given to the compile step only: linking with it would make the shared library
set flush-to-zero for the whole process.
"""

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("cells.c")
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC", "-std=c11"]

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False

_I, _L, _P = ctypes.c_int, ctypes.c_long, ctypes.c_void_p
_SIGNATURES = {
    "rnn_forward": [_I] * 4 + [_P] * 4,
    "rnn_backward": [_I] * 5 + [_P] * 4 + [_L, _L, _P, _L, _L] + [_P] * 6,
    "lstm_forward": [_I] * 4 + [_P] * 7,
    "lstm_backward": [_I] * 5 + [_P] * 5 + [_L, _L, _P, _L, _L] + [_P] * 8,
    "gru_forward": [_I] * 4 + [_P] * 6,
    "gru_backward": [_I] * 5 + [_P] * 4 + [_L, _L, _P, _L, _L] + [_P] * 6,
}


def enabled() -> bool:
    return os.environ.get("SEQFLOW_KERNELS", "1") not in ("0", "false", "no")


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return ""


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc"))


def build(cache: Path | None = None) -> Path:
    """Compile cells.c (if not cached) and return the shared library's path."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc) on PATH; install gcc or set CC")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        "\0".join([SOURCE.read_text(), " ".join(CFLAGS), version, _cpu_flags()]).encode()
    ).hexdigest()[:16]
    cache = cache or Path(
        os.environ.get("SEQFLOW_KERNEL_CACHE", Path.home() / ".cache" / "seqflow" / "kernels")
    )
    target = cache / f"cells-{key}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        obj, lib = Path(tmp) / "cells.o", Path(tmp) / "cells.so"
        for cmd in ([cc, *CFLAGS, "-c", str(SOURCE), "-o", str(obj)],
                    [cc, "-shared", "-fopenmp", str(obj), "-o", str(lib), "-lm"]):  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"building {SOURCE.name} failed: {' '.join(cmd)}\n{done.stderr}")
        os.replace(lib, target)
    return target


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None (see the module's docstring)."""
    global _lib, _tried
    if not enabled():
        return None
    with _lock:
        if not _tried:
            _tried = True
            try:
                lib = ctypes.CDLL(str(build()))
                for name, args in _SIGNATURES.items():
                    getattr(lib, name).argtypes = args
                    getattr(lib, name).restype = None
                _lib = lib
            except (OSError, RuntimeError) as e:
                msg = f"seqflow: recurrence kernels unavailable ({e}); the scratch cells use "
                warnings.warn(msg + "their torch formulation", stacklevel=2)
    return _lib


def usable(*tensors: torch.Tensor) -> bool:
    """True when the kernels can run on these tensors: CPU float32, and the library loads."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and (
        library() is not None
    )


def threads() -> int:
    """The kernels' OpenMP team size, torch's own: torch.get_num_threads()."""
    return max(1, torch.get_num_threads())


def run(name: str, *args, nt: int | None = None) -> None:
    """Call kernel `name(nt, *args)`; tensors go by data pointer, None as NULL. The kernel
    splits the batch rows over `nt` OpenMP threads (default threads(); ctypes drops the GIL).
    Backward kernels write one gradient block per thread: size those with the same nt."""
    ptrs = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args]
    getattr(library(), name)(nt or threads(), *ptrs)
