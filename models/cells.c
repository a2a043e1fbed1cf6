/* The scratch cells' recurrences, fused (float32). One call runs every time step of a block
 * of batch rows [b0, b1), with the row's state in cache. Same gate equations and gate order
 * as the torch versions in models/recurrence.py. Compiled on first use by models/kernels.py.
 *
 * Forward: `g` [B, T, G] holds the input projections x @ W_x on entry (one matrix product,
 * done by the caller; the kernel adds the bias) and the gate activations on return. hs, cs [B, T + 1, H]
 * (slot 0 holds the initial state; the RNN's outputs are g itself).
 *
 * Backward: d_out[b, t, k] at d_out[b * ob + t * ot + k]; x[b, t, i] at x[b * xb + t * xt + i].
 * Thread k of a team of nt OpenMP threads (torch's own libgomp) adds its rows' weight and bias
 * gradients into block k of dWx [threads, I, G], dWh [threads, H, G], db [threads, G]; the
 * caller sums the blocks. d_pre [B, T, G], the gradient of the pre-activations,
 * is written when not NULL (the caller needs it only when x itself needs a gradient).
 * W [H, G] row-major; WT its transpose [G, H].
 */
#include <math.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#define ROWS 4 /* rows whose steps the RNN forward interleaves (independent chains) */
typedef float v8 __attribute__((vector_size(32)));

static inline v8 ld(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
static inline void st(float *p, v8 v) { memcpy(p, &v, sizeof v); }

/* exp for |x| <= 88 (clamped beyond): Cody-Waite range reduction and Cephes' polynomial,
 * about 1 ulp; written as plain arithmetic so that the loops calling it vectorize. */
static inline float fexp(float x) {
    x = fminf(fmaxf(x, -87.0f), 88.0f);
    const float n = rintf(x * 1.44269504088896341f);
    const float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int bits = ((int)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float fsigm(float x) { return 1.0f / (1.0f + fexp(-x)); }

/* tanh: an odd polynomial near 0 (Cephes), 1 - 2 / (exp(2x) + 1) elsewhere */
static inline float ftanh(float x) {
    const float z = x * x;
    const float small =
        ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
          1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    const float big = 1.0f - 2.0f / (fexp(2.0f * x) + 1.0f);
    return fabsf(x) < 0.625f ? small : big;
}

static void sigm_n(float *v, int n) { for (int j = 0; j < n; j++) v[j] = fsigm(v[j]); }
static void tanh_n(float *v, int n) { for (int j = 0; j < n; j++) v[j] = ftanh(v[j]); }
static void tanh_to(float *restrict out, const float *restrict v, int n) {
    for (int j = 0; j < n; j++) out[j] = ftanh(v[j]);
}

/* acc[0:N] (+)= v[0:K] @ M[K, N] (M row-major, row stride N): adds to acc, or overwrites it
 * when add is 0. Columns in blocks of 32 held in registers, two accumulator sets (even and
 * odd k) to keep 8 FMA chains in flight. */
static inline void matvec_acc(float *restrict acc, const float *restrict v,
                              const float *restrict M, int K, int N, int add) {
    int j = 0;
    for (; j + 32 <= N; j += 32) {
        v8 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        if (add) a0 = ld(acc + j), a1 = ld(acc + j + 8), a2 = ld(acc + j + 16), a3 = ld(acc + j + 24);
        v8 b0 = {0}, b1 = {0}, b2 = {0}, b3 = {0};
        int k = 0;
        for (; k + 2 <= K; k += 2) {
            const float *m = M + (long)k * N + j, *n = m + N;
            const float x = v[k], y = v[k + 1];
            a0 += x * ld(m), a1 += x * ld(m + 8), a2 += x * ld(m + 16), a3 += x * ld(m + 24);
            b0 += y * ld(n), b1 += y * ld(n + 8), b2 += y * ld(n + 16), b3 += y * ld(n + 24);
        }
        if (k < K) {
            const float *m = M + (long)k * N + j;
            const float x = v[k];
            a0 += x * ld(m), a1 += x * ld(m + 8), a2 += x * ld(m + 16), a3 += x * ld(m + 24);
        }
        st(acc + j, a0 + b0), st(acc + j + 8, a1 + b1);
        st(acc + j + 16, a2 + b2), st(acc + j + 24, a3 + b3);
    }
    for (; j + 8 <= N; j += 8) {
        v8 a = {0};
        if (add) a = ld(acc + j);
        for (int k = 0; k < K; k++) a += v[k] * ld(M + (long)k * N + j);
        st(acc + j, a);
    }
    for (; j < N; j++) {
        float a = add ? acc[j] : 0.0f;
        for (int k = 0; k < K; k++) a += v[k] * M[(long)k * N + j];
        acc[j] = a;
    }
}

static void matvec(float *restrict acc, const float *restrict v, const float *restrict M,
                   int K, int N) {
    matvec_acc(acc, v, M, K, N, 1);
}

/* out[0:N] = v[0:K] @ M[K, N] */
static void matvec_set(float *restrict out, const float *restrict v, const float *restrict M,
                   int K, int N) {
    matvec_acc(out, v, M, K, N, 0);
}

/* bit k of the result: a[k] != 0, for k < n <= 64 */
static inline unsigned long long nonzero_mask(const float *a, int n) {
    unsigned long long m = 0;
    int k = 0;
#ifdef __AVX2__
    const __m256 zero = _mm256_setzero_ps();
    for (; k + 8 <= n; k += 8) {
        const __m256 ne = _mm256_cmp_ps(_mm256_loadu_ps(a + k), zero, _CMP_NEQ_UQ);
        m |= (unsigned long long)(unsigned)_mm256_movemask_ps(ne) << k;
    }
#endif
    for (; k < n; k++) m |= (unsigned long long)(a[k] != 0.0f) << k;
    return m;
}

/* acc[K, N] += A^T @ D over T rows: A[t, k] at A[t * as + k], D [T, N] contiguous.
 * Only the nonzeros of A are visited, found 64 at a time by a bit mask (one-hot inputs
 * cost one row update per step, with no unpredictable branch). */
static void outer_sparse(float *restrict acc, const float *restrict A, long as,
                         const float *restrict D, int T, int K, int N) {
    for (int t = 0; t < T; t++) {
        const float *a = A + t * as, *d = D + (long)t * N;
        for (int k0 = 0; k0 < K; k0 += 64) {
            unsigned long long m = nonzero_mask(a + k0, K - k0 < 64 ? K - k0 : 64);
            while (m) {
                const int k = k0 + __builtin_ctzll(m);
                m &= m - 1;
                const float v = a[k];
                float *restrict row = acc + (long)k * N;
                for (int j = 0; j < N; j++) row[j] += v * d[j];
            }
        }
    }
}

/* acc[K, N] (row stride lda) += A^T @ D over T rows (dense): A[t, k] at A[t * as + k],
 * D[t, j] at D[t * ds + j]. Two rows of acc at a time, 32 columns each, in registers:
 * 8 independent FMA chains per step. */
static void outer_dense(float *restrict acc, long lda, const float *restrict A, long as,
                        const float *restrict D, long ds, int T, int K, int N) {
    int k = 0;
    for (; k + 2 <= K; k += 2) {
        float *restrict r0 = acc + (long)k * lda, *restrict r1 = r0 + lda;
        int j = 0;
        for (; j + 32 <= N; j += 32) {
            v8 a0 = ld(r0 + j), a1 = ld(r0 + j + 8), a2 = ld(r0 + j + 16), a3 = ld(r0 + j + 24);
            v8 c0 = ld(r1 + j), c1 = ld(r1 + j + 8), c2 = ld(r1 + j + 16), c3 = ld(r1 + j + 24);
            for (int t = 0; t < T; t++) {
                const float x = A[t * as + k], y = A[t * as + k + 1];
                const float *d = D + t * ds + j;
                const v8 d0 = ld(d), d1 = ld(d + 8), d2 = ld(d + 16), d3 = ld(d + 24);
                a0 += x * d0, a1 += x * d1, a2 += x * d2, a3 += x * d3;
                c0 += y * d0, c1 += y * d1, c2 += y * d2, c3 += y * d3;
            }
            st(r0 + j, a0), st(r0 + j + 8, a1), st(r0 + j + 16, a2), st(r0 + j + 24, a3);
            st(r1 + j, c0), st(r1 + j + 8, c1), st(r1 + j + 16, c2), st(r1 + j + 24, c3);
        }
        for (; j < N; j++) {
            float a = r0[j], c = r1[j];
            for (int t = 0; t < T; t++) {
                a += A[t * as + k] * D[t * ds + j];
                c += A[t * as + k + 1] * D[t * ds + j];
            }
            r0[j] = a, r1[j] = c;
        }
    }
    for (; k < K; k++) {
        float *restrict row = acc + (long)k * lda;
        for (int j = 0; j < N; j++) {
            float a = row[j];
            for (int t = 0; t < T; t++) a += A[t * as + k] * D[t * ds + j];
            row[j] = a;
        }
    }
}

static void add_bias(float *restrict v, const float *restrict bias, int n) {
    for (int j = 0; j < n; j++) v[j] += bias[j];
}

static void add_rows(float *restrict db, const float *restrict D, int T, int N) {
    for (int t = 0; t < T; t++)
        for (int j = 0; j < N; j++) db[j] += D[(long)t * N + j];
}

/* the row's d_pre: the caller's buffer when it wants one, else per-call scratch */
static float *row_buffer(float *d_pre, float *scratch, int b, int T, int G) {
    return d_pre ? d_pre + (long)b * T * G : scratch;
}

static void init_state(float *dst, const float *src, int H) {
    if (src) memcpy(dst, src, sizeof(float) * H);
    else memset(dst, 0, sizeof(float) * H);
}

/* ---------------------------------------------------------------- RNN: H = tanh(pre) */

static void rnn_forward_rows(int T, int H, int b0, int b1, float *g, const float *W,
                             const float *bias, const float *h0) {
    for (int b = b0; b < b1; b += ROWS) {
        const int n = b1 - b < ROWS ? b1 - b : ROWS;
        const float *hp[ROWS];
        for (int r = 0; r < n; r++) hp[r] = h0 + (long)(b + r) * H;
        for (int t = 0; t < T; t++)
            for (int r = 0; r < n; r++) {
                float *h = g + ((long)(b + r) * T + t) * H;
                add_bias(h, bias, H);
                matvec(h, hp[r], W, H, H);
                tanh_n(h, H);
                hp[r] = h;
            }
    }
}

static void rnn_backward_rows(int T, int H, int I, int b0, int b1, const float *WT, const float *g,
                  const float *h0, const float *x, long xb, long xt, const float *d_out,
                  long ob, long ot, const float *dh_last, float *d_pre, float *dh0,
                  float *dWx, float *dWh, float *db) {
    float *dh = malloc(sizeof(float) * (H + (long)T * H));
    float *scratch = dh + H;
    for (int b = b0; b < b1; b++) {
        const float *hb = g + (long)b * T * H;
        float *dp_row = row_buffer(d_pre, scratch, b, T, H);
        init_state(dh, dh_last ? dh_last + (long)b * H : NULL, H);
        for (int t = T - 1; t >= 0; t--) {
            const float *restrict h = hb + (long)t * H, *restrict go = d_out + b * ob + t * ot;
            float *restrict dp = dp_row + (long)t * H;
            for (int k = 0; k < H; k++) dp[k] = (dh[k] + go[k]) * (1.0f - h[k] * h[k]);
            matvec_set(dh, dp, WT, H, H);
        }
        memcpy(dh0 + (long)b * H, dh, sizeof(float) * H);
        if (T) {  /* h_prev of step 0 is h0, of step t > 0 the output of t - 1 */
            outer_dense(dWh, H, h0 + (long)b * H, 0, dp_row, 0, 1, H, H);
            outer_dense(dWh, H, hb, H, dp_row + H, H, T - 1, H, H);
        }
        outer_sparse(dWx, x + b * xb, xt, dp_row, T, I, H);
        add_rows(db, dp_row, T, H);
    }
    free(dh);
}

/* ------------------------------------- LSTM: i, f, o = sigmoid, c~ = tanh (that order);
 * C = f * C + i * c~; H = o * tanh(C) */

static void lstm_forward_rows(int T, int H, int b0, int b1, float *g, const float *W,
                              const float *bias, const float *h0,
                  const float *c0, float *hs, float *cs) {
    const int G = 4 * H;
    float *tc = malloc(sizeof(float) * H);
    for (int b = b0; b < b1; b++) {
        float *hb = hs + (long)b * (T + 1) * H, *cb = cs + (long)b * (T + 1) * H;
        memcpy(hb, h0 + (long)b * H, sizeof(float) * H);
        memcpy(cb, c0 + (long)b * H, sizeof(float) * H);
        for (int t = 0; t < T; t++) {
            float *restrict a = g + ((long)b * T + t) * G;
            add_bias(a, bias, G);
            matvec(a, hb + (long)t * H, W, H, G);
            sigm_n(a, 3 * H);
            tanh_n(a + 3 * H, H);
            const float *restrict cp = cb + (long)t * H;
            float *restrict c = cb + (long)(t + 1) * H, *restrict h = hb + (long)(t + 1) * H;
            for (int k = 0; k < H; k++) c[k] = a[H + k] * cp[k] + a[k] * a[3 * H + k];
            tanh_to(tc, c, H);
            for (int k = 0; k < H; k++) h[k] = a[2 * H + k] * tc[k];
        }
    }
    free(tc);
}

static void lstm_backward_rows(int T, int H, int I, int b0, int b1, const float *WT, const float *g,
                   const float *hs, const float *cs, const float *x, long xb, long xt,
                   const float *d_out, long ob, long ot, const float *dh_last,
                   const float *dc_last, float *d_pre, float *dh0, float *dc0, float *dWx,
                   float *dWh, float *db) {
    const int G = 4 * H;
    float *dh = malloc(sizeof(float) * (3 * H + (long)T * G));
    float *dc = dh + H, *tc = dh + 2 * H, *scratch = dh + 3 * H;
    for (int b = b0; b < b1; b++) {
        const float *cb = cs + (long)b * (T + 1) * H, *hb = hs + (long)b * (T + 1) * H;
        float *dp_row = row_buffer(d_pre, scratch, b, T, G);
        init_state(dh, dh_last ? dh_last + (long)b * H : NULL, H);
        init_state(dc, dc_last ? dc_last + (long)b * H : NULL, H);
        for (int t = T - 1; t >= 0; t--) {
            const float *restrict a = g + ((long)b * T + t) * G;
            const float *restrict cp = cb + (long)t * H;
            const float *restrict go = d_out + b * ob + t * ot;
            float *restrict dp = dp_row + (long)t * G;
            tanh_to(tc, cb + (long)(t + 1) * H, H);
            if (t < T - 1) {
                const float *restrict fn = a + G + H;  /* f of step t + 1 */
                for (int k = 0; k < H; k++) dc[k] *= fn[k];
            }
#pragma GCC ivdep
            for (int k = 0; k < H; k++) {
                const float i = a[k], f = a[H + k], o = a[2 * H + k], cand = a[3 * H + k];
                const float dhk = dh[k] + go[k];
                const float dck = dc[k] + dhk * o * (1.0f - tc[k] * tc[k]);
                dc[k] = dck;
                dp[k] = dck * cand * i * (1.0f - i);
                dp[H + k] = dck * cp[k] * f * (1.0f - f);
                dp[2 * H + k] = dhk * tc[k] * o * (1.0f - o);
                dp[3 * H + k] = dck * i * (1.0f - cand * cand);
            }
            matvec_set(dh, dp, WT, G, H);
        }
        const float *f0 = g + (long)b * T * G + H;
        for (int k = 0; k < H; k++) dc0[(long)b * H + k] = T ? dc[k] * f0[k] : dc[k];
        memcpy(dh0 + (long)b * H, dh, sizeof(float) * H);
        outer_dense(dWh, G, hb, H, dp_row, G, T, H, G);
        outer_sparse(dWx, x + b * xb, xt, dp_row, T, I, G);
        add_rows(db, dp_row, T, G);
    }
    free(dh);
}

/* ------------------ GRU (reset before the product): z, r = sigmoid(pre[z, r] + H W[:, zr]);
 * h~ = tanh(pre[h] + (r * H) W[:, h]); H' = h~ + z * (H - h~). Wzr [H, 2H], Whh [H, H]. */

static void gru_forward_rows(int T, int H, int b0, int b1, float *g, const float *Wzr, const float *Whh,
                             const float *bias,
                 const float *h0, float *hs) {
    const int G = 3 * H;
    float *rh = malloc(sizeof(float) * H);
    for (int b = b0; b < b1; b++) {
        float *hb = hs + (long)b * (T + 1) * H;
        memcpy(hb, h0 + (long)b * H, sizeof(float) * H);
        for (int t = 0; t < T; t++) {
            float *restrict a = g + ((long)b * T + t) * G, *restrict c = a + 2 * H;
            const float *restrict hp = hb + (long)t * H;
            float *restrict h = hb + (long)(t + 1) * H;
            add_bias(a, bias, G);
            matvec(a, hp, Wzr, H, 2 * H);
            sigm_n(a, 2 * H);
            for (int k = 0; k < H; k++) rh[k] = a[H + k] * hp[k];
            matvec(c, rh, Whh, H, H);
            tanh_n(c, H);
            for (int k = 0; k < H; k++) h[k] = c[k] + a[k] * (hp[k] - c[k]);
        }
    }
    free(rh);
}

static void gru_backward_rows(int T, int H, int I, int b0, int b1, const float *WT, const float *g,
                  const float *hs, const float *x, long xb, long xt, const float *d_out,
                  long ob, long ot, const float *dh_last, float *d_pre, float *dh0,
                  float *dWx, float *dWh, float *db) {
    const int G = 3 * H;
    float *dh = malloc(sizeof(float) * (2 * H + (long)T * H + (long)T * G));
    float *d_rh = dh + H, *rh = dh + 2 * H, *scratch = rh + (long)T * H;
    for (int b = b0; b < b1; b++) {
        const float *hb = hs + (long)b * (T + 1) * H;
        float *dp_row = row_buffer(d_pre, scratch, b, T, G);
        init_state(dh, dh_last ? dh_last + (long)b * H : NULL, H);
        for (int t = T - 1; t >= 0; t--) {
            const float *restrict a = g + ((long)b * T + t) * G, *restrict c = a + 2 * H;
            const float *restrict hp = hb + (long)t * H;
            const float *restrict go = d_out + b * ob + t * ot;
            float *restrict dp = dp_row + (long)t * G;
#pragma GCC ivdep
            for (int k = 0; k < H; k++) {
                const float z = a[k], d = dh[k] + go[k];
                dh[k] = d;
                dp[2 * H + k] = d * (1.0f - z) * (1.0f - c[k] * c[k]);
                dp[k] = d * (hp[k] - c[k]) * z * (1.0f - z);
                rh[(long)t * H + k] = a[H + k] * hp[k];
            }
            matvec_set(d_rh, dp + 2 * H, WT + (long)2 * H * H, H, H);
#pragma GCC ivdep
            for (int k = 0; k < H; k++) {
                const float r = a[H + k];
                dp[H + k] = d_rh[k] * hp[k] * r * (1.0f - r);
                dh[k] = dh[k] * a[k] + d_rh[k] * r;
            }
            matvec(dh, dp, WT, 2 * H, H);
        }
        memcpy(dh0 + (long)b * H, dh, sizeof(float) * H);
        /* W[:, z r] pairs with H_prev, W[:, h] with r * H_prev */
        outer_dense(dWh, G, hb, H, dp_row, G, T, H, 2 * H);
        outer_dense(dWh + 2 * H, G, rh, H, dp_row + 2 * H, G, T, H, H);
        outer_sparse(dWx, x + b * xb, xt, dp_row, T, I, G);
        add_rows(db, dp_row, T, G);
    }
    free(dh);
}

/* ------------------------------------------------------------ entry points (B rows) */

#define SPLIT(B)                                                          \
    const int k_ = omp_get_thread_num(), n_ = omp_get_num_threads();      \
    const int b0 = (int)((long)(B) * k_ / n_), b1 = (int)((long)(B) * (k_ + 1) / n_);

void rnn_forward(int nt, int B, int T, int H, float *g, const float *W, const float *bias,
                 const float *h0) {
#pragma omp parallel num_threads(nt) if (B >= 32)
    {
        SPLIT(B)
        rnn_forward_rows(T, H, b0, b1, g, W, bias, h0);
    }
}

void rnn_backward(int nt, int B, int T, int H, int I, const float *WT, const float *g, const float *h0,
                  const float *x, long xb, long xt, const float *d_out, long ob, long ot,
                  const float *dh_last, float *d_pre, float *dh0, float *dWx, float *dWh,
                  float *db) {
#pragma omp parallel num_threads(nt) if (B >= 32)
    {
        SPLIT(B)
        rnn_backward_rows(T, H, I, b0, b1, WT, g, h0, x, xb, xt, d_out, ob, ot, dh_last, d_pre,
                          dh0, dWx + (long)k_ * I * H, dWh + (long)k_ * H * H, db + (long)k_ * H);
    }
}

void lstm_forward(int nt, int B, int T, int H, float *g, const float *W, const float *bias,
                  const float *h0, const float *c0, float *hs, float *cs) {
#pragma omp parallel num_threads(nt) if (B >= 32)
    {
        SPLIT(B)
        lstm_forward_rows(T, H, b0, b1, g, W, bias, h0, c0, hs, cs);
    }
}

void lstm_backward(int nt, int B, int T, int H, int I, const float *WT, const float *g, const float *hs,
                   const float *cs, const float *x, long xb, long xt, const float *d_out,
                   long ob, long ot, const float *dh_last, const float *dc_last, float *d_pre,
                   float *dh0, float *dc0, float *dWx, float *dWh, float *db) {
    const long G = 4L * H;
#pragma omp parallel num_threads(nt) if (B >= 32)
    {
        SPLIT(B)
        lstm_backward_rows(T, H, I, b0, b1, WT, g, hs, cs, x, xb, xt, d_out, ob, ot, dh_last,
                           dc_last, d_pre, dh0, dc0, dWx + k_ * I * G, dWh + k_ * H * G,
                           db + k_ * G);
    }
}

void gru_forward(int nt, int B, int T, int H, float *g, const float *Wzr, const float *Whh,
                 const float *bias, const float *h0, float *hs) {
#pragma omp parallel num_threads(nt) if (B >= 32)
    {
        SPLIT(B)
        gru_forward_rows(T, H, b0, b1, g, Wzr, Whh, bias, h0, hs);
    }
}

void gru_backward(int nt, int B, int T, int H, int I, const float *WT, const float *g, const float *hs,
                  const float *x, long xb, long xt, const float *d_out, long ob, long ot,
                  const float *dh_last, float *d_pre, float *dh0, float *dWx, float *dWh,
                  float *db) {
    const long G = 3L * H;
#pragma omp parallel num_threads(nt) if (B >= 32)
    {
        SPLIT(B)
        gru_backward_rows(T, H, I, b0, b1, WT, g, hs, x, xb, xt, d_out, ob, ot, dh_last, d_pre,
                          dh0, dWx + k_ * I * G, dWh + k_ * H * G, db + k_ * G);
    }
}
