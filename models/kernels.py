"""The compiled kernels: the fused recurrence cells (models/cells.c) and word2vec's SGNS loop
(models/sgns.c), one shared library built with the system C compiler at install time (`make
install` runs `python -m models.kernels`) or else on first use, cached, and loaded with
ctypes. They split their work over OpenMP threads; the library is loaded after torch, so
its libgomp is torch's own (same soname) and the kernels share torch's thread pool instead of
competing with its spinning workers.

`library()` returns None, with one warning, when the kernels cannot be used: no C compiler
(`cc`, or $CC), a failed build, or SEQFLOW_KERNELS=0. The scratch cells then run their
torch formulation (models/recurrence.py), which computes the same function, and word2vec's
sgns its numba loop (models/sgns_numba.py).

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

SOURCES = [Path(__file__).with_name(name) for name in ("cells.c", "sgns.c")]
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-fPIC", "-std=c11"]

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False

_I, _L, _P, _F = ctypes.c_int, ctypes.c_long, ctypes.c_void_p, ctypes.c_float
_RESULT = {"sgns_epoch": ctypes.c_double}  # the others return nothing
_SIGNATURES = {
    "sgns_epoch": [
        _I,
        _P,
        _P,
        _I,
        _I,
        _P,
        _P,
        _P,
        _L,
        _P,
        _P,
        _I,
        _F,
        _F,
        _L,
        _L,
        ctypes.c_uint64,
    ],  # fmt: skip
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
    """Compile the sources (if not cached) and return the shared library's path."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc) on PATH; install gcc or set CC")
    version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256(
        "\0".join(
            [*(f.read_text() for f in SOURCES), " ".join(CFLAGS), version, _cpu_flags()]
        ).encode()  # fmt: skip
    ).hexdigest()[:16]
    cache = cache or Path(
        os.environ.get("SEQFLOW_KERNEL_CACHE", Path.home() / ".cache" / "seqflow" / "kernels")
    )
    target = cache / f"kernels-{key}.so"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        objs = [str(Path(tmp) / f"{f.stem}.o") for f in SOURCES]
        lib = Path(tmp) / "kernels.so"
        steps = [[cc, *CFLAGS, "-c", str(f), "-o", o] for f, o in zip(SOURCES, objs, strict=True)]
        steps.append([cc, "-shared", "-fopenmp", *objs, "-o", str(lib), "-lm"])
        compiling = [subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
                     for cmd in steps[:-1]]  # fmt: skip
        for cmd, proc in [*zip(steps[:-1], compiling, strict=True), (steps[-1], None)]:  # link last
            proc = proc or subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
            if proc.wait():
                raise RuntimeError(f"building the kernels failed: {' '.join(cmd)}\n"
                                   f"{proc.stderr.read()}")  # fmt: skip
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
                    getattr(lib, name).restype = _RESULT.get(name)
                _lib = lib
            except (OSError, RuntimeError) as e:
                msg = f"seqflow: compiled kernels unavailable ({e}); the scratch cells use "
                warnings.warn(msg + "their torch formulation, sgns its numba loop", stacklevel=2)
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


if __name__ == "__main__":  # `make install`: build the library ahead of the first run
    print(build())
