"""Skip-gram negative sampling on the CPU: a compiled per-pair SGD loop (numba).

PyTorch spends most of a CPU SGNS step gathering rows and building sparse gradients; this loop
updates the touched rows in place, pair by pair, as word2vec's C code does (linear learning-rate
decay, noise words from a unigram**0.75 table). Threads share the weights without locks
("Hogwild"), so with more than one thread results vary slightly between runs. The weights are
the model's own tensors, viewed as NumPy arrays.
"""

import math

import numpy as np
from numba import get_num_threads, njit, prange


@njit(nogil=True, cache=True, fastmath=True)
def _chunk(win, wout, centers, contexts, order, table, k, lr0, lr1, done0, stride, total, seed):
    dim = win.shape[1]
    grad = np.empty(dim, dtype=np.float32)
    state = np.uint64(seed)
    loss = 0.0
    n = order.shape[0]
    for j in range(n):
        i = order[j]
        c = centers[i]
        o = contexts[i]
        lr = lr0 + (lr1 - lr0) * (done0 + j * stride) / total  # linear decay, all epochs
        grad[:] = 0.0
        for s in range(k + 1):
            if s == 0:
                target = o
                label = 1.0
            else:
                state = state * np.uint64(25214903917) + np.uint64(11)
                target = table[(state >> np.uint64(16)) % np.uint64(table.shape[0])]
                if target == o:
                    continue
                label = 0.0
            f = 0.0
            for d in range(dim):
                f += win[c, d] * wout[target, d]
            if f > 20.0:
                p = 1.0
            elif f < -20.0:
                p = 0.0
            else:
                p = 1.0 / (1.0 + math.exp(-f))
            if j % 16 == 0:  # the loss is reported from every 16th pair, an estimate
                loss -= math.log(max(p if label == 1.0 else 1.0 - p, 1e-12))
            g = (label - p) * lr
            for d in range(dim):
                grad[d] += g * wout[target, d]
                wout[target, d] += g * win[c, d]
        for d in range(dim):
            win[c, d] += grad[d]
    return loss


@njit(parallel=True, cache=True)
def _epoch(win, wout, centers, contexts, order, table, k, lr0, lr1, done, total, seed, chunks):
    losses = np.zeros(chunks)
    size = (order.shape[0] + chunks - 1) // chunks
    for t in prange(chunks):
        part = order[t * size : min((t + 1) * size, order.shape[0])]
        losses[t] = _chunk(
            win,
            wout,
            centers,
            contexts,
            part,
            table,
            k,
            lr0,
            lr1,
            done + t,
            chunks,
            total,
            seed + 7919 * t,
        )
    return losses.sum()


def sgns_epoch(
    win: np.ndarray,
    wout: np.ndarray,
    pairs: np.ndarray,
    order: np.ndarray,
    table: np.ndarray,
    negatives: int,
    lr: float,
    done: int,
    total: int,
    seed: int,
) -> float:
    """One pass over pairs[order] (center, context); returns the mean loss per pair.

    lr decays linearly from `lr` to `lr * 1e-4` over `total` pair visits, of which `done` are past.
    """
    centers = np.ascontiguousarray(pairs[:, 0])
    contexts = np.ascontiguousarray(pairs[:, 1])
    loss = _epoch(
        win,
        wout,
        centers,
        contexts,
        order.astype(np.int64),
        table.astype(np.int64),
        negatives,
        lr,
        lr * 1e-4,
        done,
        total,
        seed,
        get_num_threads(),
    )
    return loss / max(-(-len(order) // 16), 1)
