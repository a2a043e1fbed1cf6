"""The NumPy LSTM of Laboratorio 3 (part 2), with the notebook's names and signatures.

z = [h_{t-1}; x_t], f = sigmoid(W_f z + b_f), i = sigmoid(W_i z + b_i),
g = tanh(W_g z + b_g), C_t = f * C_{t-1} + i * g, o = sigmoid(W_o z + b_o),
h_t = o * tanh(C_t), v = W_v h_t + b_v, y_t = softmax(v).
params: (W_f, W_i, W_g, W_o, W_v, b_f, b_i, b_g, b_o, b_v).

Reproduces the notebook's numbers: ``init_lstm`` first draws randn for W_f, W_i, W_g,
W_o, W_v, then replaces each by an orthogonal matrix (new draws, same order); the loss
is sum_t mean(-y_t log p_t) (no epsilon) and ``backward`` clips (norm 0.25).

By default (``notebook=True``) ``backward`` keeps the notebook's cell-state indexing,
which its printed training losses depend on: C holds m + 1 states (C[0] initial), yet
step t uses C[t] as its own state and C[t-1] as the previous one (C[-1] at t = 0), one
step behind. ``notebook=False`` uses C[t+1] and C[t]: the exact gradient of the summed
cross-entropy (vocab_size times the gradient of the returned loss); ``clip=False``
returns it unclipped. The hidden size is read from the parameters, not a global.
"""

import numpy as np

from models.numpy_rnn import (
    clip_gradient_norm,
    init_orthogonal,
    sigmoid,
    softmax,
    tanh,
    update_parameters,
)

__all__ = ["init_lstm", "forward", "backward", "update_parameters"]


def init_lstm(hidden_size, vocab_size, z_size, rng=None):
    """(W_f, W_i, W_g, W_o, W_v, b_f, b_i, b_g, b_o, b_v), weights orthogonal, biases 0."""
    draw = np.random if rng is None else rng
    shapes = [(hidden_size, z_size)] * 4 + [(vocab_size, hidden_size)]
    weights = [draw.randn(*shape) for shape in shapes]  # drawn, then replaced, as in the notebook
    weights = [init_orthogonal(w, rng) for w in weights]
    biases = [np.zeros((hidden_size, 1)) for _ in range(4)] + [np.zeros((vocab_size, 1))]
    return tuple(weights + biases)


def forward(inputs, h_prev, C_prev, p):
    """Run the sequence from (h_prev, C_prev).

    Returns z_s, f_s, i_s, g_s, C_s, o_s, h_s, v_s, output_s: lists with one (n, 1) array
    per step, except C_s and h_s, which start with the initial state (m + 1 entries).
    """
    W_f, W_i, W_g, W_o, W_v, b_f, b_i, b_g, b_o, b_v = p
    hidden_size = W_f.shape[0]
    assert h_prev.shape == (hidden_size, 1)
    assert C_prev.shape == (hidden_size, 1)
    z_s, f_s, i_s, g_s, o_s, v_s, output_s = [], [], [], [], [], [], []
    h_s, C_s = [h_prev], [C_prev]
    for x in inputs:
        z = np.vstack((h_prev, x))
        f = sigmoid(np.dot(W_f, z) + b_f)
        i = sigmoid(np.dot(W_i, z) + b_i)
        g = tanh(np.dot(W_g, z) + b_g)
        C_prev = f * C_prev + i * g
        o = sigmoid(np.dot(W_o, z) + b_o)
        h_prev = o * tanh(C_prev)
        v = np.dot(W_v, h_prev) + b_v
        z_s.append(z)
        f_s.append(f)
        i_s.append(i)
        g_s.append(g)
        C_s.append(C_prev)
        o_s.append(o)
        h_s.append(h_prev)
        v_s.append(v)
        output_s.append(softmax(v))
    return z_s, f_s, i_s, g_s, C_s, o_s, h_s, v_s, output_s


def backward(z, f, i, g, C, o, h, v, outputs, targets, p, *, clip=True, notebook=True):
    """Backpropagation through time; returns (loss, grads), grads in the order of ``p``."""
    W_f, W_i, W_g, W_o, W_v, b_f, b_i, b_g, b_o, b_v = p
    hidden_size = W_f.shape[0]
    W_f_d, W_i_d, W_g_d, W_o_d, W_v_d = (np.zeros_like(w) for w in (W_f, W_i, W_g, W_o, W_v))
    b_f_d, b_i_d, b_g_d, b_o_d, b_v_d = (np.zeros_like(b) for b in (b_f, b_i, b_g, b_o, b_v))
    dh_next = np.zeros_like(h[0])
    dC_next = np.zeros_like(C[0])
    loss = 0
    for t in reversed(range(len(outputs))):
        loss += -np.mean(targets[t] * np.log(outputs[t]))
        C_t, C_prev = (C[t], C[t - 1]) if notebook else (C[t + 1], C[t])
        tanh_C = np.tanh(C_t)

        dv = outputs[t].copy()
        dv[np.argmax(targets[t])] -= 1
        W_v_d += np.dot(dv, h[t + 1].T)
        b_v_d += dv
        dh = np.dot(W_v.T, dv) + dh_next

        do = dh * tanh_C
        do *= o[t] * (1 - o[t])
        W_o_d += np.dot(do, z[t].T)
        b_o_d += do

        dC = dC_next + dh * o[t] * (1 - tanh_C**2)
        dg = dC * i[t]
        dg *= 1 - g[t] ** 2
        W_g_d += np.dot(dg, z[t].T)
        b_g_d += dg

        di = dC * g[t]
        di *= i[t] * (1 - i[t])
        W_i_d += np.dot(di, z[t].T)
        b_i_d += di

        df = dC * C_prev
        df *= f[t] * (1 - f[t])
        W_f_d += np.dot(df, z[t].T)
        b_f_d += df

        dz = np.dot(W_f.T, df) + np.dot(W_i.T, di) + np.dot(W_g.T, dg) + np.dot(W_o.T, do)
        dh_next = dz[:hidden_size, :]
        dC_next = f[t] * dC
    grads = (W_f_d, W_i_d, W_g_d, W_o_d, W_v_d, b_f_d, b_i_d, b_g_d, b_o_d, b_v_d)
    return loss, clip_gradient_norm(grads) if clip else grads
