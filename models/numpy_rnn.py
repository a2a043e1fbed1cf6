"""The NumPy RNN of Laboratorio 3 (part 1), with the notebook's names and signatures.

h_t = tanh(U x_t + V h_{t-1} + b_hidden), y_t = softmax(W h_t + b_out); params are the
tuple (U, V, W, b_hidden, b_out). Column vectors: x_t (vocab, 1), h_t (hidden, 1).

Reproduces the notebook's numbers: ``init_orthogonal`` / ``init_rnn`` draw from
``np.random`` (or ``rng``) in the notebook's order, the activations add 1e-12, the loss
is sum_t CE_t / vocab_size, and ``backward_pass`` clips the gradients (norm 0.25).

By default (``notebook=True``) ``backward_pass`` keeps two quirks of the notebook, which
its graded gradients and printed losses depend on:
  * the tanh derivative is applied to h_t itself: 1 - tanh(h_t)^2 instead of 1 - h_t^2;
  * at t = 0 the "previous state" is ``hidden_states[-1]`` (the last one), not h_{-1}.
``notebook=False`` gives the exact gradient of sum_t CE_t (initial state zero, as in
every use), and ``clip=False`` returns it unclipped. The gradients are those of the
summed cross-entropy, i.e. vocab_size times the gradient of the returned loss.

The notebook's training cell (per-sequence SGD with ``update_parameters``, the validation
loss first in each epoch) is ``tasks.train.fundamentals.NumpyRecipe``, run by the training
runtime, as is the LSTM's.
"""

import numpy as np


def init_orthogonal(param, rng=None):
    """A random orthogonal matrix of ``param``'s shape (Saxe et al., arXiv:1312.6120).

    Draws ``randn(rows, cols)`` from ``rng`` (default: the global ``np.random``).
    """
    if param.ndim < 2:
        raise ValueError("Only parameters with 2 or more dimensions are supported.")
    rows, cols = param.shape
    new_param = (np.random if rng is None else rng).randn(rows, cols)
    if rows < cols:
        new_param = new_param.T
    q, r = np.linalg.qr(new_param)
    q *= np.sign(np.diag(r, 0))  # uniform over orthogonal matrices (math-ph/0609050)
    return q.T if rows < cols else q


def init_rnn(hidden_size, vocab_size, rng=None):
    """(U, V, W, b_hidden, b_out); U, V, W orthogonal, drawn in that order."""
    U = init_orthogonal(np.zeros((hidden_size, vocab_size)), rng)
    V = init_orthogonal(np.zeros((hidden_size, hidden_size)), rng)
    W = init_orthogonal(np.zeros((vocab_size, hidden_size)), rng)
    return U, V, W, np.zeros((hidden_size, 1)), np.zeros((vocab_size, 1))


def sigmoid(x, derivative=False):
    """Logistic function of x + 1e-12, or its derivative f (1 - f)."""
    f = 1 / (1 + np.exp(-(x + 1e-12)))
    return f * (1 - f) if derivative else f


def tanh(x, derivative=False):
    """tanh(x + 1e-12), or its derivative 1 - f^2 at x."""
    f = np.tanh(x + 1e-12)
    return 1 - f**2 if derivative else f


def softmax(x, derivative=False):
    """Softmax over the whole array of x + 1e-12 (no max shift, as in the notebook)."""
    if derivative:
        raise NotImplementedError("not needed: backprop uses softmax + cross-entropy")
    exp_x = np.exp(x + 1e-12)
    return exp_x / np.sum(exp_x)


def forward_pass(inputs, hidden_state, params):
    """Run the sequence; returns (outputs, hidden_states), one (n, 1) array per step."""
    U, V, W, b_hidden, b_out = params
    outputs, hidden_states = [], []
    for x_t in inputs:
        hidden_state = tanh(np.dot(U, x_t) + np.dot(V, hidden_state) + b_hidden)
        outputs.append(softmax(np.dot(W, hidden_state) + b_out))
        hidden_states.append(hidden_state.copy())
    return outputs, hidden_states


def clip_gradient_norm(grads, max_norm=0.25):
    """Scale all gradients in place so their joint L2 norm is at most ``max_norm``."""
    total_norm = np.sqrt(sum(np.sum(np.power(g, 2)) for g in grads))
    clip_coef = float(max_norm) / (total_norm + 1e-6)
    if clip_coef < 1:
        for g in grads:
            g *= clip_coef
    return grads


def backward_pass(inputs, outputs, hidden_states, targets, params, *, clip=True, notebook=True):
    """Backpropagation through time; returns (loss, (d_U, d_V, d_W, d_b_hidden, d_b_out))."""
    U, V, W, b_hidden, b_out = params
    d_U, d_V, d_W = np.zeros_like(U), np.zeros_like(V), np.zeros_like(W)
    d_b_hidden, d_b_out = np.zeros_like(b_hidden), np.zeros_like(b_out)
    d_h_next = np.zeros_like(hidden_states[0])
    loss = 0
    for t in reversed(range(len(outputs))):
        loss += -np.sum(targets[t] * np.log(outputs[t] + 1e-12)) / targets[t].shape[0]
        d_o = outputs[t] - targets[t]
        d_W += np.dot(d_o, hidden_states[t].T)
        d_b_out += d_o
        d_h = np.dot(W.T, d_o) + d_h_next
        if notebook:
            d_f = tanh(hidden_states[t], derivative=True) * d_h
            h_prev = hidden_states[t - 1]  # wraps to the last state at t = 0
        else:
            d_f = (1 - hidden_states[t] ** 2) * d_h
            h_prev = hidden_states[t - 1] if t > 0 else np.zeros_like(hidden_states[0])
        d_b_hidden += d_f
        d_U += np.dot(d_f, inputs[t].T)
        d_V += np.dot(d_f, h_prev.T)
        d_h_next = np.dot(V.T, d_f)
    grads = d_U, d_V, d_W, d_b_hidden, d_b_out
    return loss, clip_gradient_norm(grads) if clip else grads


def update_parameters(params, grads, lr=1e-3):
    """Plain SGD, in place: param -= lr * grad. Returns ``params``."""
    for param, grad in zip(params, grads, strict=True):
        param -= lr * grad
    return params
