/* Skip-gram negative sampling on the CPU: word2vec's per-pair SGD loop (models/sgns_cpu.py
 * holds its description and the alias table it draws noise words from). The pairs `order`
 * are split into `nt` contiguous parts, one per OpenMP thread, updating the shared weights
 * without locks (Hogwild). Pair j of part t sits at j * nt + t in the learning-rate schedule,
 * which decays linearly from lr0 to lr1 over `total` pair visits, `done` of them past.
 * Returns the summed loss of every 16th pair of each part. */
#include <math.h>
#include <stdint.h>

static double part(float *win, float *wout, int dim, int vocab, const int32_t *centers,
                   const int32_t *contexts, const int64_t *order, int64_t n,
                   const float *accept, const int32_t *alias, int k, float lr0, float lr1,
                   int64_t done0, int64_t stride, int64_t total, uint64_t seed) {
    float grad[dim]; /* wc, wt, grad: rows of two matrices and a local, never overlapping */
    uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 1ULL;
    double loss = 0.0;
    float *rows[k + 1], gs[k + 1];
    for (int64_t j = 0; j < n; j++) {
        int64_t i = order[j];
        float *restrict wc = win + (int64_t)centers[i] * dim;
        int32_t o = contexts[i];
        int m = 0; /* the targets: the context, then the noise words that are not it */
        rows[m++] = wout + (int64_t)o * dim;
        for (int s = 1; s <= k; s++) { /* xorshift64*: high bits pick a slot, low bits accept */
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            uint64_t r = state * 0x2545F4914F6CDD1DULL;
            int64_t slot = (int64_t)(((r >> 32) * (uint64_t)vocab) >> 32);
            float u = (float)(r & 0xFFFFFFULL) * (1.0f / 16777216.0f);
            int32_t target = u < accept[slot] ? (int32_t)slot : alias[slot];
            if (target != o) rows[m++] = wout + (int64_t)target * dim;
        }
        float lr = lr0 + (lr1 - lr0) * (float)((double)(done0 + j * stride) / (double)total);
        if (lr < lr1) lr = lr1;
        for (int s = 0; s < m; s++) { /* the scores first: independent of one another */
            const float *restrict wt = rows[s];
            float f = 0.0f;
            for (int d = 0; d < dim; d++) f += wc[d] * wt[d];
            float p = f > 20.0f ? 1.0f : (f < -20.0f ? 0.0f : 1.0f / (1.0f + expf(-f)));
            if (j % 16 == 0) { /* the loss, estimated from every 16th pair */
                double q = s == 0 ? p : 1.0f - p;
                loss -= log(q > 1e-12 ? q : 1e-12);
            }
            gs[s] = ((s == 0 ? 1.0f : 0.0f) - p) * lr;
        }
        for (int d = 0; d < dim; d++) grad[d] = 0.0f;
        for (int s = 0; s < m; s++) {
            float *restrict wt = rows[s];
            float g = gs[s];
            for (int d = 0; d < dim; d++) {
                grad[d] += g * wt[d];
                wt[d] += g * wc[d];
            }
        }
        for (int d = 0; d < dim; d++) wc[d] += grad[d];
    }
    return loss;
}

double sgns_epoch(int nt, float *win, float *wout, int dim, int vocab, const int32_t *centers,
                  const int32_t *contexts, const int64_t *order, int64_t n,
                  const float *accept, const int32_t *alias, int k, float lr0, float lr1,
                  int64_t done, int64_t total, uint64_t seed) {
    double loss = 0.0;
    int64_t size = (n + nt - 1) / nt;
#pragma omp parallel for num_threads(nt) schedule(static, 1) reduction(+ : loss)
    for (int t = 0; t < nt; t++) {
        int64_t lo = t * size, hi = lo + size < n ? lo + size : n;
        if (lo < hi)
            loss += part(win, wout, dim, vocab, centers, contexts, order + lo, hi - lo, accept,
                         alias, k, lr0, lr1, done + t, nt, total, seed + 7919ULL * t);
    }
    return loss;
}
