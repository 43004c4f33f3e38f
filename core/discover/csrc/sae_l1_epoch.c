/*
 * One training epoch of the paper's linear L1 SAE (SPEC §2) on the CPU, as one C call.
 *
 * Why this exists: at batch 32 the SAE step is five small matmuls (32×512×h), and through torch
 * each costs a dispatch plus a BLAS call sized for big matrices; Adam then makes seven passes over
 * the parameters. Here the matmuls are register-blocked loops over GCC/Clang vector types,
 * compiled by core/discover/native.py with -ffp-contract=off (no FMA contraction), so the results
 * are the same on every CPU; the vector width only changes speed. core/discover/sae_engine.py calls
 * this for the L1 kind on CPU float32; tests/test_sae.py checks it against autograd +
 * torch.optim.Adam and against the torch engine.
 *
 * Layouts (row-major, one seed): enc_t = encoder.weight transposed (d×h), enc_b (h),
 * dec_t = decoder.weight transposed (h×d), dec_b (d); Adam moments alike.
 * Maths per batch a (b×d), with c = 2/(b·d), s = λ/(b·h), r = â − a (the SAE is linear: u is
 * dense and signed, so there is no sparsity to exploit):
 *   u = a·enc_t + enc_b            r = u·dec_t + dec_b − a
 *   ∂dec_t = c·uᵀr   ∂dec_b = c·Σ_b r   ∂u = c·r·dec_tᵀ + s·sign(u)
 *   ∂enc_t = aᵀ·∂u   ∂enc_b = Σ_b ∂u
 * then torch.optim.Adam's update (same element-wise operation order, no weight decay).
 *
 * Two cores: the latents are split into two fixed halves ("parts", when h is a multiple of 32).
 * Every quantity above except r only involves one half's latents: u's columns, ∂u's columns,
 * dec_t's rows and enc_t's columns of that half. r is the sum of the two halves' products, so
 * each part computes its partial product, one barrier per step, and both threads add the two
 * partials in the same order (identical r). Each part's gradients are consumed by Adam straight
 * from the matmul's registers (no gradient array: one read and one write of p, m, v per step).
 * The split is fixed by h, not by the thread count, so one thread running both parts gives
 * bit-identical results to two threads.
 */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define VL 16 /* floats per vector */
typedef float vf __attribute__((vector_size(64), aligned(4), may_alias));
typedef int32_t vi __attribute__((vector_size(64), aligned(4), may_alias));

#define MR 6 /* rows per register block of 4 vectors: 24 accumulators */
#define MR2 12 /* rows per register block of 2 vectors (or fewer): 24 accumulators */

enum { EPI_PLAIN, EPI_BIAS, EPI_ADAM };

typedef struct {
    float *p, *m, *v; /* same layout as C: the parameter, its two moments */
    float beta1, beta2, step_size, inv_bc2_sqrt, eps;
} Adam;

typedef struct {
    int kind;
    float alpha;       /* scales the product */
    const float *bias; /* EPI_BIAS: added per column */
    const Adam *adam;  /* EPI_ADAM: the product is a gradient, applied to adam's p, m, v */
} Epilogue;

static inline vf vload(const float *p) { return *(const vf *)p; }
static inline void vstore(float *p, vf x) { *(vf *)p = x; }
static inline vf vsplat(float x) { return (vf){0} + x; }

/* torch.optim.Adam (defaults, no weight decay): lerp, mul+addcmul, sqrt·(1/√bc2)+eps, addcdiv.
 * torch divides by √bc2; multiplying by its reciprocal (within one rounding of it) saves one of the
 * two vector divisions, which dominate Adam's cost here. */
static inline void adam(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                        int64_t count, float beta1, float beta2, float step_size, float inv_bc2_sqrt, float eps) {
    for (int64_t i = 0; i < count; i++) {
        m[i] = m[i] + (1.0f - beta1) * (g[i] - m[i]);
        v[i] = v[i] * beta2 + (1.0f - beta2) * g[i] * g[i];
        float denom = sqrtf(v[i]) * inv_bc2_sqrt + eps;
        p[i] = p[i] - step_size * (m[i] / denom);
    }
}

/* adam() on one vector of gradients (written with vector types: the short fixed-length loop the
 * compiler would otherwise wrap in alias checks and remainder handling). */
static inline void adam_vec(const Adam *a, ptrdiff_t offset, vf g) {
    vf m = vload(a->m + offset), v = vload(a->v + offset), p = vload(a->p + offset), root;
    m = m + vsplat(1.0f - a->beta1) * (g - m);
    v = v * vsplat(a->beta2) + vsplat(1.0f - a->beta2) * g * g;
    for (int l = 0; l < VL; l++) root[l] = sqrtf(v[l]);
    vf denom = root * vsplat(a->inv_bc2_sqrt) + vsplat(a->eps);
    p = p - vsplat(a->step_size) * (m / denom);
    vstore(a->m + offset, m), vstore(a->v + offset, v), vstore(a->p + offset, p);
}

/* C[rows, nv·VL columns from col0] = epilogue(A·B) for up to mr rows starting at row0.
 * A[i, k] = A[i·sa_row + k·sa_k] (any strides: it is only broadcast); B, C row-major. */
static inline __attribute__((always_inline)) void block(const int nv, const int mr, int rows, int row0, int col0,
                                                        int K, const float *A, ptrdiff_t sa_row, ptrdiff_t sa_k,
                                                        const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc,
                                                        const Epilogue *e) {
    vf acc[MR2][4];
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < nv; v++) acc[i][v] = (vf){0};
    const float *a = A + row0 * sa_row;
    for (int k = 0; k < K; k++) {
        const float *bk = B + k * ldb + col0;
        vf b0 = vload(bk), b1 = nv > 1 ? vload(bk + VL) : (vf){0};
        vf b2 = nv > 2 ? vload(bk + 2 * VL) : (vf){0}, b3 = nv > 3 ? vload(bk + 3 * VL) : (vf){0};
        for (int i = 0; i < mr; i++) {
            if (i < rows) {
                vf ai = vsplat(a[i * sa_row + k * sa_k]);
                acc[i][0] += ai * b0;
                if (nv > 1) acc[i][1] += ai * b1;
                if (nv > 2) acc[i][2] += ai * b2;
                if (nv > 3) acc[i][3] += ai * b3;
            }
        }
    }
    for (int i = 0; i < rows; i++) {
        const int row = row0 + i;
        if (e->kind == EPI_ADAM) {
            for (int v = 0; v < nv; v++) adam_vec(e->adam, row * ldc + col0 + v * VL, vsplat(e->alpha) * acc[i][v]);
            continue;
        }
        for (int v = 0; v < nv; v++) {
            const int col = col0 + v * VL;
            vf out = vsplat(e->alpha) * acc[i][v];
            if (e->kind == EPI_BIAS) out = out + vload(e->bias + col);
            vstore(C + row * ldc + col, out);
        }
    }
}

/* One band of up to MR rows across all N columns (blocks of 4 vectors, then 1). */
static void row_band(int rows, int row0, int N, int K, const float *A, ptrdiff_t sa_row, ptrdiff_t sa_k,
                     const float *B, ptrdiff_t ldb, float *C, ptrdiff_t ldc, const Epilogue *e) {
    int col0 = 0;
    for (; col0 + 4 * VL <= N; col0 += 4 * VL) block(4, MR, rows, row0, col0, K, A, sa_row, sa_k, B, ldb, C, ldc, e);
    for (; col0 < N; col0 += VL) block(1, MR, rows, row0, col0, K, A, sa_row, sa_k, B, ldb, C, ldc, e);
}

/* C (M×N) = epilogue(A·B), N a multiple of VL: blocks of 4 vectors, then 2, then 1. Column bands
 * (B, the large operand of the forward products, is read once per band); for the Adam epilogue,
 * where B is small and C is the large parameter with its moments, row bands, so p, m and v are
 * walked row after row, contiguously, instead of in 256-byte pieces a row apart. */
static void matmul(int M, int N, int K, const float *A, ptrdiff_t sa_row, ptrdiff_t sa_k, const float *B,
                   ptrdiff_t ldb, float *C, ptrdiff_t ldc, const Epilogue *e) {
    if (e->kind == EPI_ADAM) {
        for (int row0 = 0; row0 < M; row0 += MR)
            row_band(M - row0 < MR ? M - row0 : MR, row0, N, K, A, sa_row, sa_k, B, ldb, C, ldc, e);
        return;
    }
    int col0 = 0;
    for (; col0 + 4 * VL <= N; col0 += 4 * VL)
        for (int row0 = 0; row0 < M; row0 += MR)
            block(4, MR, M - row0 < MR ? M - row0 : MR, row0, col0, K, A, sa_row, sa_k, B, ldb, C, ldc, e);
    for (; col0 + 2 * VL <= N; col0 += 2 * VL)
        for (int row0 = 0; row0 < M; row0 += MR2)
            block(2, MR2, M - row0 < MR2 ? M - row0 : MR2, row0, col0, K, A, sa_row, sa_k, B, ldb, C, ldc, e);
    for (; col0 < N; col0 += VL)
        for (int row0 = 0; row0 < M; row0 += MR2)
            block(1, MR2, M - row0 < MR2 ? M - row0 : MR2, row0, col0, K, A, sa_row, sa_k, B, ldb, C, ldc, e);
}

/* out[j] = scale · Σ_i X[i, j] over rows (row stride ld, width a multiple of VL). */
static void column_sums(int rows, int width, const float *X, ptrdiff_t ld, float scale, float *out) {
    for (int col = 0; col < width; col += VL) {
        vf s = (vf){0};
        for (int i = 0; i < rows; i++) s += vload(X + i * ld + col);
        vstore(out + col, vsplat(scale) * s);
    }
}

/* Ask for the next batch's rows while this one computes (they are scattered over the data). */
static void prefetch_rows(const float *data, const int64_t *rows, int count, int d) {
    for (int i = 0; i < count; i++)
        for (int col = 0; col < d; col += 64 / (int)sizeof(float)) __builtin_prefetch(data + rows[i] * d + col);
}

typedef struct {
    float *param[4], *grad[4], *exp_avg[4], *exp_avg_sq[4]; /* enc_t, enc_b, dec_t, dec_b */
} SAEBuffers;

typedef struct {
    int64_t n, d, h, batch;
    double lr, l1_coeff, beta1, beta2, eps;
    int64_t adam_step; /* in: updates done so far; out: after this epoch */
    int64_t threads;   /* 1 or 2 (results do not depend on it) */
} EpochArgs;

/* A reusable two-party barrier: spin briefly, then yield (the machine may be shared). */
typedef struct {
    int count, generation;
} Barrier;

static void barrier_wait(Barrier *b, int parties) {
    if (parties < 2) return;
    const int generation = __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&b->count, 1, __ATOMIC_ACQ_REL) == parties) {
        __atomic_store_n(&b->count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&b->generation, generation + 1, __ATOMIC_RELEASE);
        return;
    }
    for (long spins = 0; __atomic_load_n(&b->generation, __ATOMIC_ACQUIRE) == generation; spins++) {
        if (spins > 4000) sched_yield();
#if defined(__x86_64__) || defined(__i386__)
        else __builtin_ia32_pause();
#endif
    }
}

/* Shared state of one epoch call. */
typedef struct {
    const float *data;
    const int64_t *order;
    SAEBuffers *s;
    EpochArgs *a;
    float *latents_out, *err_norm_out;
    int d, h, parts, part_h, threads, bpad;
    float *partial[2][2]; /* [step parity][part]: that part's share of â (b×d) */
    float *gu;            /* b×h: ∂u, each part writes its own columns */
    Barrier barrier;
} Epoch;

/* One thread's private buffers. */
typedef struct {
    Epoch *ep;
    int thread;
    float *x, *r, *rt, *gut, *tmp;
} Worker;

/* Forward of one part: its latents (u's columns) and its partial â. Part 0 adds dec_b. */
static void part_forward(const Epoch *ep, const float *x, int b, int part, float *u, float *partial) {
    const int d = ep->d, h = ep->h, j0 = part * ep->part_h, ph = ep->part_h;
    const SAEBuffers *s = ep->s;
    Epilogue e_u = {EPI_BIAS, 1.0f, s->param[1] + j0, NULL};
    matmul(b, ph, d, x, d, 1, s->param[0] + j0, h, u + j0, h, &e_u);
    Epilogue e_r = {part == 0 ? EPI_BIAS : EPI_PLAIN, 1.0f, s->param[3], NULL};
    matmul(b, d, ph, u + j0, h, 1, s->param[2] + (ptrdiff_t)j0 * d, d, partial, d, &e_r);
}

/* Backward + Adam of one part, given the full residual r (b×d) and its transpose rt (d×bpad). */
static void part_update(const Epoch *ep, Worker *w, int b, int part, const float *u, Adam adam_base, float c,
                        float l1) {
    const int d = ep->d, h = ep->h, j0 = part * ep->part_h, ph = ep->part_h, bp = ep->bpad;
    const SAEBuffers *s = ep->s;
    /* ∂uᵀ (part rows × b) = dec_t[part] · rᵀ, before dec_t[part] moves */
    Epilogue e_plain = {EPI_PLAIN, 1.0f, NULL, NULL};
    matmul(ph, bp, d, s->param[2] + (ptrdiff_t)j0 * d, d, 1, w->rt, bp, w->gut, bp, &e_plain);
    for (int i = 0; i < b; i++)
        for (int j = 0; j < ph; j++) {
            const float uij = u[i * h + j0 + j];
            const float sign = (float)((uij > 0.0f) - (uij < 0.0f));
            ep->gu[i * h + j0 + j] = c * w->gut[j * bp + i] + l1 * sign;
        }
    /* ∂dec_t[part] = c·u[:, part]ᵀ·r, into Adam */
    Adam ad = adam_base;
    ad.p = s->param[2] + (ptrdiff_t)j0 * d, ad.m = s->exp_avg[2] + (ptrdiff_t)j0 * d;
    ad.v = s->exp_avg_sq[2] + (ptrdiff_t)j0 * d;
    Epilogue e_dec = {EPI_ADAM, c, NULL, &ad};
    matmul(ph, d, b, u + j0, 1, h, w->r, d, NULL, d, &e_dec);
    /* ∂enc_t[:, part] = aᵀ·∂u[:, part], into Adam */
    Adam ae = adam_base;
    ae.p = s->param[0] + j0, ae.m = s->exp_avg[0] + j0, ae.v = s->exp_avg_sq[0] + j0;
    Epilogue e_enc = {EPI_ADAM, 1.0f, NULL, &ae};
    matmul(d, ph, b, w->x, 1, d, ep->gu + j0, h, NULL, h, &e_enc);
    /* ∂enc_b[part] = Σ_b ∂u[:, part] */
    column_sums(b, ph, ep->gu + j0, h, 1.0f, w->tmp);
    adam(s->param[1] + j0, w->tmp, s->exp_avg[1] + j0, s->exp_avg_sq[1] + j0, ph, adam_base.beta1,
         adam_base.beta2, adam_base.step_size, adam_base.inv_bc2_sqrt, adam_base.eps);
}

/* rt (d×bpad) = rᵀ, zero in the padding columns. */
static void transpose_residual(const float *r, int b, int d, int bpad, float *rt) {
    for (int k = 0; k < d; k++) {
        for (int i = 0; i < b; i++) rt[k * bpad + i] = r[i * d + k];
        for (int i = b; i < bpad; i++) rt[k * bpad + i] = 0.0f;
    }
}

static void *run_worker(void *arg) {
    Worker *w = arg;
    Epoch *ep = w->ep;
    EpochArgs *a = ep->a;
    const int d = ep->d, h = ep->h;
    int64_t adam_step = a->adam_step;
    /* the parts this thread owns: all of them with one thread, else its own */
    const int first = ep->threads == 1 ? 0 : w->thread, last = ep->threads == 1 ? ep->parts : w->thread + 1;
    for (int64_t start = 0, step = 0; start < a->n; start += a->batch, step++) {
        const int b = (int)(a->n - start < a->batch ? a->n - start : a->batch);
        const float c = 2.0f / ((float)b * (float)d), l1 = (float)(a->l1_coeff / ((double)b * h));
        for (int i = 0; i < b; i++) memcpy(w->x + (size_t)i * d, ep->data + ep->order[start + i] * d, sizeof(float) * d);
        if (start + b < a->n) {
            const int64_t next = a->n - start - b < a->batch ? a->n - start - b : a->batch;
            prefetch_rows(ep->data, ep->order + start + b, (int)next, d);
        }
        float *u = ep->latents_out + start * h;
        float **partial = ep->partial[step & 1];
        for (int part = first; part < last; part++) part_forward(ep, w->x, b, part, u, partial[part]);
        barrier_wait(&ep->barrier, ep->threads);
        /* r = (partial₀ + partial₁) − a, the same order in every thread */
        for (int i = 0; i < b * d; i += VL) {
            vf sum = vload(partial[0] + i);
            if (ep->parts > 1) sum = sum + vload(partial[1] + i);
            vstore(w->r + i, sum - vload(w->x + i));
        }
        transpose_residual(w->r, b, d, ep->bpad, w->rt);
        adam_step += 1;
        const double bc1 = 1.0 - pow(a->beta1, (double)adam_step);
        const double bc2 = 1.0 - pow(a->beta2, (double)adam_step);
        Adam base = {NULL, NULL, NULL, (float)a->beta1, (float)a->beta2, (float)(a->lr / bc1), (float)(1.0 / sqrt(bc2)),
                     (float)a->eps};
        for (int part = first; part < last; part++) part_update(ep, w, b, part, u, base, c, l1);
        if (first == 0) { /* part 0's owner: the residual norms and dec_b, which only it reads */
            for (int i = 0; i < b; i++) {
                vf sq = (vf){0};
                for (int col = 0; col < d; col += VL) {
                    vf ri = vload(w->r + i * d + col);
                    sq += ri * ri;
                }
                float total = 0.0f;
                for (int l = 0; l < VL; l++) total += sq[l];
                ep->err_norm_out[start + i] = sqrtf(total);
            }
            column_sums(b, d, w->r, d, c, w->tmp);
            SAEBuffers *s = ep->s;
            adam(s->param[3], w->tmp, s->exp_avg[3], s->exp_avg_sq[3], d, base.beta1, base.beta2, base.step_size,
                 base.inv_bc2_sqrt, base.eps);
        }
    }
    if (w->thread == 0) a->adam_step = adam_step;
    return NULL;
}

/* Returns 0, or 1 when the shapes are unsupported (d or h not a multiple of 16), 2 on no memory
 * (or no thread). latents_out (n×h) and err_norm_out (n) receive u and ||â − a|| in visit order. */
int salve_sae_l1_epoch(const float *data, const int64_t *order, SAEBuffers *s, EpochArgs *a,
                       float *latents_out, float *err_norm_out) {
    const int d = (int)a->d, h = (int)a->h;
    if (d % VL || h % VL || a->batch < 1) return 1;
    Epoch ep = {data, order, s, a, latents_out, err_norm_out, d, h, 0, 0, 0, 0, {{NULL}}, NULL, {0, 0}};
    ep.parts = h % (2 * VL) == 0 ? 2 : 1;
    ep.part_h = h / ep.parts;
    ep.threads = a->threads >= 2 && ep.parts == 2 ? 2 : 1;
    ep.bpad = (int)((a->batch + VL - 1) / VL * VL);
    const size_t bd = (size_t)ep.bpad * d, dmax = (size_t)(d > h ? d : h);
    /* shared: 4 partials, gu; per thread: x, r, rt, gut, tmp */
    const size_t per_worker = bd * 3 + (size_t)ep.part_h * ep.bpad + dmax;
    const size_t floats = 4 * bd + (size_t)ep.bpad * h + 2 * per_worker;
    float *work = aligned_alloc(64, ((floats * sizeof(float)) + 63) / 64 * 64);
    if (!work) return 2;
    float *next = work;
    for (int parity = 0; parity < 2; parity++)
        for (int part = 0; part < 2; part++, next += bd) ep.partial[parity][part] = next;
    ep.gu = next, next += (size_t)ep.bpad * h;
    Worker workers[2];
    for (int t = 0; t < 2; t++) {
        Worker *w = &workers[t];
        w->ep = &ep, w->thread = t;
        w->x = next, w->r = next + bd, w->rt = next + 2 * bd, w->gut = next + 3 * bd;
        w->tmp = w->gut + (size_t)ep.part_h * ep.bpad;
        next += per_worker;
    }
    pthread_t helper;
    if (ep.threads == 2 && pthread_create(&helper, NULL, run_worker, &workers[1]) != 0) ep.threads = 1;
    run_worker(&workers[0]);
    if (ep.threads == 2) pthread_join(helper, NULL);
    free(work);
    return 0;
}
