/*
 * One training epoch of the paper's linear L1 SAE (SPEC §2) on the CPU, as one C call.
 *
 * Why this exists: at batch 32 the SAE step is five small matmuls (32×512×64), and on CPUs where
 * the BLAS that torch ships picks a narrow code path (MKL on AMD runs AVX2, not AVX-512) each
 * one costs ~17 µs through torch, plus ~2 µs of Python and dispatch per op. The matmuls below are
 * plain register-blocked loops over GCC/Clang vector types, compiled by core/discover/native.py
 * for a portable baseline with -ffp-contract=off (no FMA contraction), so the results are the
 * same on every CPU; the vector width only changes speed. core/sae.py calls this for
 * the L1 kind on CPU float32 and falls back to its torch path otherwise; tests/test_sae.py checks
 * both paths against autograd + torch.optim.Adam.
 *
 * Layouts (row-major, one seed): enc_t = encoder.weight transposed (d×h), enc_b (h),
 * dec_t = decoder.weight transposed (h×d), dec_b (d); gradients and Adam moments alike.
 * Maths per batch a (b×d), with c = 2/(b·d), s = λ/(b·h), r = â − a:
 *   u = a·enc_t + enc_b            r = u·dec_t + dec_b − a
 *   ∂dec_t = c·uᵀr   ∂dec_b = c·Σ_b r   ∂u = c·r·dec_tᵀ + s·sign(u)
 *   ∂enc_t = aᵀ·∂u   ∂enc_b = Σ_b ∂u
 * then torch.optim.Adam's update (same operation order, no weight decay).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VL 16 /* floats per vector */
typedef float vf __attribute__((vector_size(64), aligned(4), may_alias));
typedef int32_t vi __attribute__((vector_size(64), aligned(4), may_alias));

#define MR 6 /* rows per register block: 6 rows × 4 vectors = 24 accumulators */

enum { EPI_PLAIN, EPI_BIAS, EPI_RESIDUAL, EPI_SIGN };

typedef struct {
    int kind;
    float alpha;        /* scales the product */
    const float *bias;  /* EPI_BIAS, EPI_RESIDUAL: added per column */
    const float *other; /* EPI_RESIDUAL: subtracted; EPI_SIGN: sign taken */
    ptrdiff_t ld_other;
    float sign_scale; /* EPI_SIGN */
} Epilogue;

static inline vf vload(const float *p) { return *(const vf *)p; }
static inline void vstore(float *p, vf x) { *(vf *)p = x; }
static inline vf vsplat(float x) { return (vf){0} + x; }

static inline vf vsign(vf x) {
    vi pos = x > (vf){0}, neg = x < (vf){0}; /* −1 where true */
    return __builtin_convertvector(neg, vf) - __builtin_convertvector(pos, vf);
}

static inline vf finish(vf acc, const Epilogue *e, int row, int col) {
    vf out = vsplat(e->alpha) * acc;
    switch (e->kind) {
    case EPI_BIAS:
        return out + vload(e->bias + col);
    case EPI_RESIDUAL:
        return out + vload(e->bias + col) - vload(e->other + row * e->ld_other + col);
    case EPI_SIGN:
        return out + vsplat(e->sign_scale) * vsign(vload(e->other + row * e->ld_other + col));
    default:
        return out;
    }
}

/* C[rows, cols nv·VL wide] = epilogue(A·B) for up to MR rows starting at row0.
 * A[i, k] = A[i·sa_row + k·sa_k] (any strides: it is only broadcast); B, C row-major. */
static inline __attribute__((always_inline)) void block(const int nv, int rows, int row0, int col0, int K,
                                                        const float *A, ptrdiff_t sa_row, ptrdiff_t sa_k,
                                                        const float *B, ptrdiff_t ldb, float *C,
                                                        ptrdiff_t ldc, const Epilogue *e) {
    vf acc[MR][4];
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = (vf){0};
    const float *a = A + row0 * sa_row;
    for (int k = 0; k < K; k++) {
        const float *bk = B + k * ldb + col0;
        vf b0 = vload(bk), b1 = nv > 1 ? vload(bk + VL) : (vf){0};
        vf b2 = nv > 2 ? vload(bk + 2 * VL) : (vf){0}, b3 = nv > 3 ? vload(bk + 3 * VL) : (vf){0};
        for (int i = 0; i < MR; i++) {
            if (i < rows) {
                vf ai = vsplat(a[i * sa_row + k * sa_k]);
                acc[i][0] += ai * b0;
                if (nv > 1) acc[i][1] += ai * b1;
                if (nv > 2) acc[i][2] += ai * b2;
                if (nv > 3) acc[i][3] += ai * b3;
            }
        }
    }
    for (int i = 0; i < rows; i++)
        for (int v = 0; v < nv; v++) {
            int row = row0 + i, col = col0 + v * VL;
            vstore(C + row * ldc + col, finish(acc[i][v], e, row, col));
        }
}

/* C (M×N) = epilogue(A·B), N a multiple of VL. */
static void matmul(int M, int N, int K, const float *A, ptrdiff_t sa_row, ptrdiff_t sa_k, const float *B,
                   ptrdiff_t ldb, float *C, ptrdiff_t ldc, const Epilogue *e) {
    int col0 = 0;
    for (; col0 + 4 * VL <= N; col0 += 4 * VL)
        for (int row0 = 0; row0 < M; row0 += MR)
            block(4, M - row0 < MR ? M - row0 : MR, row0, col0, K, A, sa_row, sa_k, B, ldb, C, ldc, e);
    for (; col0 < N; col0 += VL)
        for (int row0 = 0; row0 < M; row0 += MR)
            block(1, M - row0 < MR ? M - row0 : MR, row0, col0, K, A, sa_row, sa_k, B, ldb, C, ldc, e);
}

/* out[j] = scale · Σ_i X[i, j] over rows (X row-major, width a multiple of VL). */
static void column_sums(int rows, int width, const float *X, float scale, float *out) {
    for (int col = 0; col < width; col += VL) {
        vf s = (vf){0};
        for (int i = 0; i < rows; i++) s += vload(X + i * width + col);
        vstore(out + col, vsplat(scale) * s);
    }
}

/* dst (cols×rows) = srcᵀ (src rows×cols, both multiples of 16), through a 16×16 tile so reads and
 * writes both stay contiguous. */
static void transpose(int rows, int cols, const float *src, float *dst) {
    float tile[VL][VL];
    for (int j0 = 0; j0 < cols; j0 += VL)
        for (int i0 = 0; i0 < rows; i0 += VL) {
            for (int i = 0; i < VL; i++)
                for (int j = 0; j < VL; j++) tile[j][i] = src[(i0 + i) * cols + j0 + j];
            for (int j = 0; j < VL; j++) vstore(dst + (j0 + j) * rows + i0, vload(tile[j]));
        }
}

/* Ask for the next batch's rows while this one computes (they are scattered over the data). */
static void prefetch_rows(const float *data, const int64_t *rows, int count, int d) {
    for (int i = 0; i < count; i++)
        for (int col = 0; col < d; col += 64 / (int)sizeof(float)) __builtin_prefetch(data + rows[i] * d + col);
}

/* torch.optim.Adam (defaults, no weight decay): lerp, mul+addcmul, sqrt/div+eps, addcdiv. */
static void adam(float *p, const float *g, float *m, float *v, int64_t count, float beta1, float beta2,
                 float step_size, float bias_correction2_sqrt, float eps) {
    for (int64_t i = 0; i < count; i++) {
        m[i] = m[i] + (1.0f - beta1) * (g[i] - m[i]);
        v[i] = v[i] * beta2 + (1.0f - beta2) * g[i] * g[i];
        float denom = sqrtf(v[i]) / bias_correction2_sqrt + eps;
        p[i] = p[i] - step_size * (m[i] / denom);
    }
}

typedef struct {
    float *param[4], *grad[4], *exp_avg[4], *exp_avg_sq[4]; /* enc_t, enc_b, dec_t, dec_b */
} SAEBuffers;

typedef struct {
    int64_t n, d, h, batch;
    double lr, l1_coeff, beta1, beta2, eps;
    int64_t adam_step; /* in: updates done so far; out: after this epoch */
} EpochArgs;

/* Returns 0, or 1 when the shapes are unsupported (d or h not a multiple of 16), 2 on no memory.
 * latents_out (n×h) and err_norm_out (n) receive u and ||â − a|| in visit order. */
int salve_sae_l1_epoch(const float *data, const int64_t *order, SAEBuffers *s, EpochArgs *a,
                       float *latents_out, float *err_norm_out) {
    const int d = (int)a->d, h = (int)a->h;
    if (d % VL || h % VL || a->batch < 1) return 1;
    const int64_t sizes[4] = {(int64_t)d * h, h, (int64_t)h * d, d};
    const size_t floats = (size_t)a->batch * d * 2 + (size_t)a->batch * h + (size_t)d * h;
    float *work = aligned_alloc(64, ((floats * sizeof(float)) + 63) / 64 * 64);
    if (!work) return 2;
    float *x = work, *r = x + a->batch * d, *gu = r + a->batch * d, *dec = gu + a->batch * h;
    float *enc_t = s->param[0], *enc_b = s->param[1], *dec_t = s->param[2], *dec_b = s->param[3];
    transpose(h, d, dec_t, dec); /* dec = decoder.weight (d×h): ∂u needs r·dec_tᵀ */

    for (int64_t start = 0; start < a->n; start += a->batch) {
        const int b = (int)(a->n - start < a->batch ? a->n - start : a->batch);
        const float c = 2.0f / ((float)b * (float)d), l1 = (float)(a->l1_coeff / ((double)b * h));
        for (int i = 0; i < b; i++) memcpy(x + (size_t)i * d, data + order[start + i] * d, sizeof(float) * d);
        if (start + b < a->n) {
            const int64_t next = a->n - start - b < a->batch ? a->n - start - b : a->batch;
            prefetch_rows(data, order + start + b, (int)next, d);
        }
        float *u = latents_out + start * h;

        Epilogue e_u = {EPI_BIAS, 1.0f, enc_b, NULL, 0, 0.0f};
        matmul(b, h, d, x, d, 1, enc_t, h, u, h, &e_u);
        Epilogue e_r = {EPI_RESIDUAL, 1.0f, dec_b, x, d, 0.0f};
        matmul(b, d, h, u, h, 1, dec_t, d, r, d, &e_r);
        for (int i = 0; i < b; i++) {
            vf sq = (vf){0};
            for (int col = 0; col < d; col += VL) {
                vf ri = vload(r + i * d + col);
                sq += ri * ri;
            }
            float total = 0.0f;
            for (int l = 0; l < VL; l++) total += sq[l];
            err_norm_out[start + i] = sqrtf(total);
        }
        Epilogue e_plain_c = {EPI_PLAIN, c, NULL, NULL, 0, 0.0f};
        matmul(h, d, b, u, 1, h, r, d, s->grad[2], d, &e_plain_c); /* c·uᵀr */
        column_sums(b, d, r, c, s->grad[3]);
        Epilogue e_gu = {EPI_SIGN, c, NULL, u, h, l1};
        matmul(b, h, d, r, d, 1, dec, h, gu, h, &e_gu);
        Epilogue e_plain = {EPI_PLAIN, 1.0f, NULL, NULL, 0, 0.0f};
        matmul(d, h, b, x, 1, d, gu, h, s->grad[0], h, &e_plain); /* aᵀ·∂u */
        column_sums(b, h, gu, 1.0f, s->grad[1]);

        a->adam_step += 1;
        const double bc1 = 1.0 - pow(a->beta1, (double)a->adam_step);
        const double bc2 = 1.0 - pow(a->beta2, (double)a->adam_step);
        for (int t = 0; t < 4; t++)
            adam(s->param[t], s->grad[t], s->exp_avg[t], s->exp_avg_sq[t], sizes[t], (float)a->beta1,
                 (float)a->beta2, (float)(a->lr / bc1), (float)sqrt(bc2), (float)a->eps);
        transpose(h, d, dec_t, dec);
    }
    free(work);
    return 0;
}
