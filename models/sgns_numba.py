"""word2vec's SGNS loop in numba (models/sgns_cpu.py describes it): the fallback for
machines where the C build (models/sgns.c) cannot run. Compiled on first use and cached
by numba (~4 s the first time)."""

import math

import numpy as np
from numba import get_num_threads, njit, prange


@njit(nogil=True, cache=True, fastmath=True)
def _chunk(win, wout, centers, contexts, order, accept, alias, k, lr0, lr1, done0, stride, total,
           seed):  # fmt: skip
    dim = win.shape[1]
    vocab = accept.shape[0]
    grad = np.empty(dim, dtype=np.float32)
    rows = np.empty(k + 1, dtype=np.int64)
    gs = np.empty(k + 1, dtype=np.float32)
    state = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(1)
    loss = 0.0
    for j in range(order.shape[0]):
        i = order[j]
        wc = win[centers[i]]
        o = contexts[i]
        m = 1  # the targets: the context, then the noise words that are not it
        rows[0] = o
        for _ in range(k):  # xorshift64*; high bits pick a slot, low bits decide accept/alias
            state ^= state >> np.uint64(12)
            state ^= state << np.uint64(25)
            state ^= state >> np.uint64(27)
            r = state * np.uint64(0x2545F4914F6CDD1D)
            slot = np.int64((r >> np.uint64(32)) * np.uint64(vocab) >> np.uint64(32))
            u = np.float32(r & np.uint64(0xFFFFFF)) * np.float32(1.0 / 16777216.0)
            target = slot if u < accept[slot] else alias[slot]
            if target != o:
                rows[m] = target
                m += 1
        lr = np.float32(max(lr0 + (lr1 - lr0) * (done0 + j * stride) / total, lr1))  # linear
        for s in range(m):  # the scores first: independent of one another
            wt = wout[rows[s]]
            f = np.float32(0.0)
            for d in range(dim):
                f += wc[d] * wt[d]
            if f > 20.0:
                p = np.float32(1.0)
            elif f < -20.0:
                p = np.float32(0.0)
            else:
                p = np.float32(1.0) / (np.float32(1.0) + np.exp(-f))
            if j % 16 == 0:  # the loss is estimated from every 16th pair
                loss -= math.log(max(p if s == 0 else 1.0 - p, 1e-12))
            gs[s] = ((np.float32(1.0) if s == 0 else np.float32(0.0)) - p) * lr
        grad[:] = np.float32(0.0)
        for s in range(m):
            wt = wout[rows[s]]
            g = gs[s]
            for d in range(dim):
                grad[d] += g * wt[d]
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


def epoch(*args) -> float:
    """_epoch with numba's thread count as the number of parts."""
    return _epoch(*args, get_num_threads())
