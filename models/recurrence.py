"""The scratch cells' recurrences with hand-written backpropagation through time.

Autograd records ~10 small ops per time step and runs ~20 more (plus slice and stack
bookkeeping) backwards; at hidden 32 that overhead, not arithmetic, is the cost. These
functions run the same gate equations in preallocated buffers, keep the activations, and
compute the backward pass explicitly: a short reverse loop for the state gradients, then
the weight gradient of every step in one matrix product (as cuDNN does).

`rnn`, `lstm`, `gru` take x [B, T, I], W_x [I, G*H], b [G*H], W_h [H, G*H] and the initial
state [B, H]; they return the outputs [B, T, H] and the final state. The input projections of
all steps are one matrix product (`project`); only the recurrence loops over time.

Two implementations of the same equations:
- on CPU float32, compiled kernels (models/cells.c, _Fused*): one call per block of batch rows
  runs every step with the row's state in cache, and the backward kernel sums the weight
  gradients as it goes (no per-step torch ops at all);
- elsewhere (float64, CUDA, no C compiler; _RNN, _LSTM, _GRU on time-major projections
  xp [T, B, G*H]): per-step torch ops in preallocated buffers, then the weight gradient of
  every step in one matrix product (as cuDNN does).
"""

import torch

from models import kernels


class _RNN(torch.autograd.Function):
    """H_t = tanh(xp_t + H_{t-1} W_h)."""

    @staticmethod
    def forward(ctx, xp, W_h, h0):
        T, B, n = xp.shape
        hs = xp.new_empty(T + 1, B, n)
        hs[0] = h0
        for t in range(T):
            torch.addmm(xp[t], hs[t], W_h, out=hs[t + 1])
            hs[t + 1].tanh_()
        ctx.save_for_backward(W_h, hs)
        return hs[1:], hs[T].clone()

    @staticmethod
    def backward(ctx, d_out, d_last):
        W_h, hs = ctx.saved_tensors
        T = hs.shape[0] - 1
        deriv = 1 - hs[1:].square()  # tanh'
        d_pre = torch.empty_like(d_out)
        carry = d_last.clone() if d_last is not None else torch.zeros_like(hs[0])
        W_hT = W_h.t()
        for t in range(T - 1, -1, -1):
            carry += d_out[t]
            torch.mul(carry, deriv[t], out=d_pre[t])
            carry = d_pre[t] @ W_hT
        return d_pre, _weight_grad(hs[:-1], d_pre), carry


class _LSTM(torch.autograd.Function):
    """Gates i, f, o = sigmoid(.), candidate c~ = tanh(.) of xp_t + H_{t-1} W_h (blocks in
    that order); C_t = f * C_{t-1} + i * c~; H_t = o * tanh(C_t)."""

    @staticmethod
    def forward(ctx, xp, W_h, h0, c0):
        T, B, G = xp.shape
        n = G // 4
        gates = torch.empty_like(xp)
        hs, cs = xp.new_empty(T + 1, B, n), xp.new_empty(T + 1, B, n)
        tcs = xp.new_empty(T, B, n)
        hs[0], cs[0] = h0, c0
        for t in range(T):
            g = gates[t]
            torch.addmm(xp[t], hs[t], W_h, out=g)
            g[:, : 3 * n].sigmoid_()
            g[:, 3 * n :].tanh_()
            torch.mul(g[:, n : 2 * n], cs[t], out=cs[t + 1])
            cs[t + 1].addcmul_(g[:, :n], g[:, 3 * n :])
            torch.tanh(cs[t + 1], out=tcs[t])
            torch.mul(g[:, 2 * n : 3 * n], tcs[t], out=hs[t + 1])
        ctx.save_for_backward(W_h, gates, hs, cs, tcs)
        return hs[1:], hs[T].clone(), cs[T].clone()

    @staticmethod
    def backward(ctx, d_out, d_h_last, d_c_last):
        W_h, gates, hs, cs, tcs = ctx.saved_tensors
        T, B, G = gates.shape
        n = G // 4
        i, f, o, cand = gates.split(n, dim=2)
        # everything that does not depend on the incoming gradient, for all steps at once
        k_c = o * (1 - tcs.square())  # dC_t += dH_t * k_c
        p_o = tcs * o * (1 - o)  # d pre_o = dH_t * p_o
        zero = torch.zeros_like(o)
        # d pre for blocks i, f, o, c~ = dC_t * q (o block 0) + dH_t * p_o on the o block
        q = torch.stack([cand * i * (1 - i), cs[:-1] * f * (1 - f), zero,
                         i * (1 - cand.square())], 2)  # fmt: skip
        d_pre = torch.empty_like(gates)
        dh = d_h_last.clone() if d_h_last is not None else torch.zeros_like(hs[0])
        dc = d_c_last.clone() if d_c_last is not None else torch.zeros_like(cs[0])
        W_hT = W_h.t()
        for t in range(T - 1, -1, -1):
            dh += d_out[t]
            if t < T - 1:
                dc *= f[t + 1]
            dc.addcmul_(dh, k_c[t])
            dp = d_pre[t]
            torch.mul(dc.unsqueeze(1), q[t], out=dp.view(B, 4, n))
            torch.mul(dh, p_o[t], out=dp[:, 2 * n : 3 * n])
            dh = dp @ W_hT
        dc *= f[0]
        return d_pre, _weight_grad(hs[:-1], d_pre), dh, dc


class _GRU(torch.autograd.Function):
    """z, r = sigmoid(xp_t[z, r] + H_{t-1} W_h[z, r]); h~ = tanh(xp_t[h] + (r * H_{t-1}) W_hh);
    H_t = z * H_{t-1} + (1 - z) * h~ (the notebook's GRU, reset before the product)."""

    @staticmethod
    def forward(ctx, xp, W_h, h0):
        T, B, G = xp.shape
        n = G // 3
        W_zr, W_hh = W_h[:, : 2 * n], W_h[:, 2 * n :]
        zr, cand = xp.new_empty(T, B, 2 * n), xp.new_empty(T, B, n)
        hs, rh = xp.new_empty(T + 1, B, n), xp.new_empty(T, B, n)
        hs[0] = h0
        for t in range(T):
            torch.addmm(xp[t, :, : 2 * n], hs[t], W_zr, out=zr[t])
            zr[t].sigmoid_()
            torch.mul(zr[t, :, n:], hs[t], out=rh[t])
            torch.addmm(xp[t, :, 2 * n :], rh[t], W_hh, out=cand[t])
            cand[t].tanh_()
            # z * h + (1 - z) * h~ = h~ + z * (h - h~)
            torch.addcmul(cand[t], zr[t, :, :n], hs[t] - cand[t], out=hs[t + 1])
        ctx.save_for_backward(W_h, zr, cand, hs, rh)
        return hs[1:], hs[T].clone()

    @staticmethod
    def backward(ctx, d_out, d_last):
        W_h, zr, cand, hs, rh = ctx.saved_tensors
        T, B, n = cand.shape
        z, r = zr.split(n, dim=2)
        h_prev = hs[:-1]
        a_z = (h_prev - cand) * z * (1 - z)  # d pre_z = dH * a_z
        k_c = (1 - z) * (1 - cand.square())  # d pre_h~ = dH * k_c
        k_r = h_prev * r * (1 - r)  # d pre_r = d(rH) * k_r
        d_pre = cand.new_empty(T, B, 3 * n)
        W_zrT, W_hhT = W_h[:, : 2 * n].t(), W_h[:, 2 * n :].t()
        dh = d_last.clone() if d_last is not None else torch.zeros_like(hs[0])
        for t in range(T - 1, -1, -1):
            dh += d_out[t]
            dp = d_pre[t]
            torch.mul(dh, k_c[t], out=dp[:, 2 * n :])
            torch.mul(dh, a_z[t], out=dp[:, :n])
            d_rh = dp[:, 2 * n :] @ W_hhT
            torch.mul(d_rh, k_r[t], out=dp[:, n : 2 * n])
            nxt = dh * z[t]
            nxt.addcmul_(d_rh, r[t])
            dh = nxt.addmm_(dp[:, : 2 * n], W_zrT)
        d_W = torch.cat([_weight_grad(h_prev, d_pre[..., : 2 * n]),
                         _weight_grad(rh, d_pre[..., 2 * n :])], 1)  # fmt: skip
        return d_pre, d_W, dh


def _weight_grad(inputs: torch.Tensor, d_pre: torch.Tensor) -> torch.Tensor:
    """sum over steps and batch of inputs_t^T @ d_pre_t, as one product."""
    return inputs.reshape(-1, inputs.shape[-1]).t() @ d_pre.reshape(-1, d_pre.shape[-1])


def project(x: torch.Tensor, W_x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x [B, T, I] -> x @ W_x + b for all steps and gates in one matrix product, [B, T, G]."""
    B, T, n_in = x.shape
    return torch.addmm(b, x.reshape(B * T, n_in), W_x).view(B, T, b.shape[0])


def _product(x: torch.Tensor, W_x: torch.Tensor) -> torch.Tensor:
    """x @ W_x for all steps, [B, T, G], one matrix product (the kernels add the bias)."""
    B, T, n_in = x.shape
    return torch.mm(x.reshape(B * T, n_in), W_x).view(B, T, W_x.shape[1])


def _rows(t: torch.Tensor | None) -> tuple[torch.Tensor | None, int, int]:
    """A [B, T, n] tensor with contiguous rows, and its batch and time strides."""
    if t is None:
        return None, 0, 0
    if t.stride(-1) != 1:
        t = t.contiguous()
    return t, t.stride(0), t.stride(1)


def _c(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.contiguous()


class _Fused(torch.autograd.Function):
    """Base of the compiled-kernel versions (models/cells.c): the input projection is one
    matrix product; one kernel call per block of rows runs every step, in place on it; the
    backward kernel also sums the weight and bias gradients, per block of rows."""

    n_gates = 1

    @classmethod
    def _backward(cls, ctx, name, args, d_out, finals):
        x, W_x, W_h = ctx.x, ctx.W_x, ctx.W_h
        B, T, n_in = x.shape
        n, G = W_h.shape
        d_out, ob, ot = _rows(d_out if d_out is not None else x.new_zeros(B, T, n))
        x_rows, xb, xt = _rows(x)
        k = kernels.threads()
        dWx, dWh, db = x.new_zeros(k, n_in, G), x.new_zeros(k, n, G), x.new_zeros(k, G)
        d_pre = x.new_empty(B, T, G) if ctx.needs_input_grad[0] else None
        d_init = [x.new_empty(B, n) for _ in finals]
        kernels.run(name, B, T, n, n_in, W_h.t().contiguous(), *args, x_rows, xb, xt, d_out,
                    ob, ot, *map(_c, finals), d_pre, *d_init, dWx, dWh, db, nt=k)  # fmt: skip
        d_x = (d_pre.view(B * T, G) @ W_x.t()).view(B, T, n_in) if d_pre is not None else None
        return (d_x, dWx.sum(0), db.sum(0), dWh.sum(0), *d_init)


class _FusedRNN(_Fused):
    @staticmethod
    def forward(ctx, x, W_x, b, W_h, h0):
        B, T = x.shape[:2]
        g = _product(x, W_x)  # becomes the outputs
        h0 = h0.contiguous()
        kernels.run("rnn_forward", B, T, W_h.shape[0], g, W_h.contiguous(), b.contiguous(), h0)
        ctx.save_for_backward(x, W_x, W_h, g, h0)
        return g, (g[:, -1] if T else h0).clone()

    @staticmethod
    def backward(ctx, d_out, d_last):
        ctx.x, ctx.W_x, ctx.W_h, g, h0 = ctx.saved_tensors
        return _Fused._backward(ctx, "rnn_backward", [g, h0], d_out, [d_last])


class _FusedLSTM(_Fused):
    @staticmethod
    def forward(ctx, x, W_x, b, W_h, h0, c0):
        B, T = x.shape[:2]
        n = W_h.shape[0]
        g = _product(x, W_x)  # becomes the gate activations
        hs, cs = g.new_empty(B, T + 1, n), g.new_empty(B, T + 1, n)
        kernels.run("lstm_forward", B, T, n, g, W_h.contiguous(), b.contiguous(),
                    h0.contiguous(), c0.contiguous(), hs, cs)  # fmt: skip
        ctx.save_for_backward(x, W_x, W_h, g, hs, cs)
        return hs[:, 1:], hs[:, T].clone(), cs[:, T].clone()

    @staticmethod
    def backward(ctx, d_out, d_h_last, d_c_last):
        ctx.x, ctx.W_x, ctx.W_h, g, hs, cs = ctx.saved_tensors
        return _Fused._backward(ctx, "lstm_backward", [g, hs, cs], d_out, [d_h_last, d_c_last])


class _FusedGRU(_Fused):
    @staticmethod
    def forward(ctx, x, W_x, b, W_h, h0):
        B, T = x.shape[:2]
        n = W_h.shape[0]
        g = _product(x, W_x)  # becomes z, r and the candidate
        hs = g.new_empty(B, T + 1, n)
        W_zr, W_hh = W_h[:, : 2 * n].contiguous(), W_h[:, 2 * n :].contiguous()
        kernels.run("gru_forward", B, T, n, g, W_zr, W_hh, b.contiguous(), h0.contiguous(), hs)
        ctx.save_for_backward(x, W_x, W_h, g, hs)
        return hs[:, 1:], hs[:, T].clone()

    @staticmethod
    def backward(ctx, d_out, d_last):
        ctx.x, ctx.W_x, ctx.W_h, g, hs = ctx.saved_tensors
        return _Fused._backward(ctx, "gru_backward", [g, hs], d_out, [d_last])


def _time_major(x, W_x, b):
    return project(x, W_x, b).transpose(0, 1)


def rnn(x, W_x, b, W_h, h0):
    """x [B, T, I] -> (outputs [B, T, H], last h [B, H])."""
    if kernels.usable(x, W_x, b, W_h, h0):
        return _FusedRNN.apply(x, W_x, b, W_h, h0)
    hs, h = _RNN.apply(_time_major(x, W_x, b), W_h, h0)
    return hs.transpose(0, 1), h


def lstm(x, W_x, b, W_h, h0, c0):
    """x [B, T, I] -> (outputs [B, T, H], (h, c) [B, H] each)."""
    if kernels.usable(x, W_x, b, W_h, h0, c0):
        hs, h, c = _FusedLSTM.apply(x, W_x, b, W_h, h0, c0)
        return hs, (h, c)
    hs, h, c = _LSTM.apply(_time_major(x, W_x, b), W_h, h0, c0)
    return hs.transpose(0, 1), (h, c)


def gru(x, W_x, b, W_h, h0):
    """x [B, T, I] -> (outputs [B, T, H], last h [B, H]); the reset-before-product GRU."""
    if kernels.usable(x, W_x, b, W_h, h0):
        return _FusedGRU.apply(x, W_x, b, W_h, h0)
    hs, h = _GRU.apply(_time_major(x, W_x, b), W_h, h0)
    return hs.transpose(0, 1), h
