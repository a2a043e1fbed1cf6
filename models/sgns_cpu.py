"""Skip-gram negative sampling on the CPU: a compiled per-pair SGD loop.

PyTorch spends most of a CPU SGNS step gathering rows and building sparse gradients; this loop
updates the touched rows in place, pair by pair, as word2vec's C code does (linear learning-rate
decay, noise words from unigram**0.75). Noise words come from an alias table (Walker): two
arrays of vocabulary size that stay in cache, where word2vec's 10^8-entry table misses it on
every draw. Threads share the weights without locks ("Hogwild"), so with more than one thread
results vary slightly between runs. The weights are the model's own tensors, viewed as NumPy.

The loop is C (models/sgns.c, built by models/kernels.py at install time, so a first run
compiles nothing); without a C compiler, numba's (models/sgns_numba.py) runs the same loop.
Pairs are visited in the order given: the corpus order, as word2vec and gensim read it.
"""

import numpy as np


def alias_table(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vose's alias method: draw i uniform, keep it with accept[i], else take alias[i]."""
    n = len(probs)
    scaled = probs.astype(np.float64) * n / probs.sum()
    accept = np.ones(n, dtype=np.float32)
    alias = np.arange(n, dtype=np.int32)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        accept[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return accept, alias


def c_kernel():
    """The C library's sgns_epoch, or None when it cannot be built or loaded."""
    from models import kernels

    lib = kernels.library()
    return None if lib is None else lib.sgns_epoch


def sgns_epoch(
    win: np.ndarray,
    wout: np.ndarray,
    centers: np.ndarray,
    contexts: np.ndarray,
    order: np.ndarray,
    noise: tuple[np.ndarray, np.ndarray],
    negatives: int,
    lr: float,
    done: int,
    total: int,
    seed: int,
    kernel: str = "c",
) -> float:
    """One pass over pairs `order` of (centers, contexts); returns the mean loss per pair.

    noise = alias_table(probs). lr decays linearly from `lr` to `lr * 1e-4` over `total` pair
    visits, of which `done` are past. kernel "c" (threads: torch's) or "numba" (numba's).
    """
    accept, alias = noise
    order = np.ascontiguousarray(order, dtype=np.int64)
    if kernel == "c":
        from models import kernels

        loss = c_kernel()(kernels.threads(), win.ctypes.data, wout.ctypes.data, win.shape[1],
                          len(accept), centers.ctypes.data, contexts.ctypes.data,
                          order.ctypes.data, len(order), accept.ctypes.data, alias.ctypes.data,
                          negatives, lr, lr * 1e-4, done, total, seed)  # fmt: skip
    else:
        from models.sgns_numba import epoch

        loss = epoch(win, wout, centers, contexts, order, accept, alias, negatives, lr,
                     lr * 1e-4, done, total, seed)  # fmt: skip
    return loss / max(-(-len(order) // 16), 1)


def warm(kernel: str = "c") -> None:
    """Load (or compile) the kernel now, so that the first epoch does not pay for it."""
    w = np.zeros((2, 4), dtype=np.float32)
    one = np.zeros(1, dtype=np.int32)
    noise = alias_table(np.ones(2))
    sgns_epoch(w, w.copy(), one, one, one.astype(np.int64), noise, 1, 0.1, 0, 1, 0, kernel)
