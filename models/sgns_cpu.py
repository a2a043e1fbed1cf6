"""Skip-gram negative sampling on the CPU: a compiled per-pair SGD loop (numba).

PyTorch spends most of a CPU SGNS step gathering rows and building sparse gradients; this loop
updates the touched rows in place, pair by pair, as word2vec's C code does (linear learning-rate
decay, noise words from unigram**0.75). Noise words come from an alias table (Walker): two
arrays of vocabulary size that stay in cache, where word2vec's 10^8-entry table misses it on
every draw. Threads share the weights without locks ("Hogwild"), so with more than one thread
results vary slightly between runs. The weights are the model's own tensors, viewed as NumPy.
"""

import math

import numpy as np
from numba import get_num_threads, njit, prange


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


@njit(nogil=True, cache=True, fastmath=True)
def _chunk(win, wout, centers, contexts, order, accept, alias, k, lr0, lr1, done0, stride, total,
           seed):  # fmt: skip
    dim = win.shape[1]
    vocab = accept.shape[0]
    grad = np.empty(dim, dtype=np.float32)
    state = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1)
    loss = 0.0
    for j in range(order.shape[0]):
        i = order[j]
        wc = win[centers[i]]
        o = contexts[i]
        lr = np.float32(max(lr0 + (lr1 - lr0) * (done0 + j * stride) / total, lr1))  # linear
        report = j % 16 == 0  # the loss is estimated from every 16th pair
        grad[:] = np.float32(0.0)
        for s in range(k + 1):
            if s == 0:
                target = o
                label = np.float32(1.0)
            else:  # xorshift64*; high bits pick a slot, low bits decide accept/alias
                state ^= state >> np.uint64(12)
                state ^= state << np.uint64(25)
                state ^= state >> np.uint64(27)
                r = state * np.uint64(0x2545F4914F6CDD1D)
                slot = np.int64((r >> np.uint64(32)) * np.uint64(vocab) >> np.uint64(32))
                u = np.float32(r & np.uint64(0xFFFFFF)) * np.float32(1.0 / 16777216.0)
                target = slot if u < accept[slot] else alias[slot]
                if target == o:
                    continue
                label = np.float32(0.0)
            wt = wout[target]
            f = np.float32(0.0)
            for d in range(dim):
                f += wc[d] * wt[d]
            if f > 20.0:
                p = np.float32(1.0)
            elif f < -20.0:
                p = np.float32(0.0)
            else:
                p = np.float32(1.0) / (np.float32(1.0) + np.exp(-f))
            if report:
                loss -= math.log(max(p if s == 0 else 1.0 - p, 1e-12))
            g = (label - p) * lr
            for d in range(dim):
                grad[d] += g * wt[d]
            for d in range(dim):
                wt[d] += g * wc[d]
        for d in range(dim):
            wc[d] += grad[d]
    return loss


@njit(parallel=True, cache=True)
def _epoch(win, wout, centers, contexts, order, accept, alias, k, lr0, lr1, done, total, seed,
           chunks):  # fmt: skip
    losses = np.zeros(chunks)
    size = (order.shape[0] + chunks - 1) // chunks
    for t in prange(chunks):
        part = order[t * size : min((t + 1) * size, order.shape[0])]
        losses[t] = _chunk(win, wout, centers, contexts, part, accept, alias, k, lr0, lr1,
                           done + t, chunks, total, seed + 7919 * t)  # fmt: skip
    return losses.sum()


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
) -> float:
    """One pass over pairs `order` of (centers, contexts); returns the mean loss per pair.

    noise = alias_table(probs). lr decays linearly from `lr` to `lr * 1e-4` over `total` pair
    visits, of which `done` are past.
    """
    accept, alias = noise
    loss = _epoch(win, wout, centers, contexts, order, accept, alias, negatives, lr, lr * 1e-4,
                  done, total, seed, get_num_threads())  # fmt: skip
    return loss / max(-(-len(order) // 16), 1)


def warm() -> None:
    """Load (or compile) the kernel now, so that the first epoch does not pay for it."""
    w = np.zeros((2, 4), dtype=np.float32)
    one = np.zeros(1, dtype=np.int32)
    noise = alias_table(np.ones(2))
    sgns_epoch(w, w.copy(), one, one, one.astype(np.int64), noise, 1, 0.1, 0, 1, 0)
