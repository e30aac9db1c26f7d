/* figspec's fused checkpoint kernel in C99: the same sums as
 * _kernel_numba.py, in the same order, so the same bits.
 *
 * Compiled on first use by the machine's C compiler into figspec's cache
 * folder (see _kernel_c.py), with -ffp-contract=off -fno-fast-math: no
 * multiply-add is fused and no sum reassociated. The order is written out
 * here: entry i of a chunk goes to lane i % LANES, each lane adds its entries
 * in order (x * x rounded, then added), the lanes are combined pairwise in a
 * fixed order (combine). The lanes are independent, so the compiler still
 * vectorises across them, at any vector width, without changing a bit.
 *
 * Values are decoded exactly: BF16 by a shift (the top half of a float32),
 * F16 and FP8 by the float64 table kernel._table() passes, F32 and F64 as
 * they are (read with memcpy: stored bytes need not be aligned). BF16, F16
 * and F32 values are float32s, so where no scale is asked they are read as
 * float32 and widened in the loop that sums them; otherwise (F64, FP8, a
 * scale) they go through float64 scratch, each value times the scale there.
 *
 * Every entry point is reentrant (scratch on the stack, nothing global): the
 * caller's threads reduce at once; ctypes lets go of the GIL for each call. */

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define LANES 64
/* Entries taken at a time into scratch that stays in the L1 cache (as
 * _kernel_numba.BLOCK). */
#define BLOCK 2048
/* Lanes summed together through a block: one AVX-512 vector of float64. */
#define GROUP 8
#define ABI 2

enum { BF16, F16, F32, F64, F8_E4M3, F8_E5M2 };
enum { EXACT, ABS, REL };
#define E4M3_AT 65536
#define E5M2_AT (65536 + 256)

#if defined(__GNUC__) || defined(__clang__)
#define INLINE static inline __attribute__((always_inline))
#define OUTLINE __attribute__((noinline))
#else
#define INLINE static inline
#define OUTLINE
#endif

/* One library for every x86-64 processor: each entry point is compiled for
 * AVX-512, AVX2 and the baseline, chosen when the library is loaded (a
 * shared home is read by machines of different processors). Asked for by
 * _kernel_c.py where it knows the compiler and loader support it. */
#if defined(FIGSPEC_CLONES)
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif
/* An entry point; a loop over a block (called once a block: a call costs
 * nothing beside it, and each is compiled once per processor kind, not once
 * per caller, which kept the compile to seconds). */
#define ENTRY CLONES
#define BLOCKWISE static CLONES OUTLINE

typedef unsigned char byte;

INLINE int is_float32(int code) { return code == BF16 || code == F16 || code == F32; }

INLINE size_t whole_lanes(size_t n) { return (n + LANES - 1) / LANES * LANES; }

/* Entries lo..lo+n of raw as float32, exactly (BF16, F16, F32 alone),
 * padded with 0 to whole lanes: F32's own entries where they are whole lanes
 * and aligned, else decoded into out. */
BLOCKWISE const float *narrow(const byte *raw, int code, size_t lo, size_t n,
                           const double *table, float *out) {
    if (code == F32) {
        const byte *p = raw + 4 * lo;
        if (n % LANES == 0 && (uintptr_t)p % sizeof(float) == 0)
            return (const float *)(const void *)p;
        memcpy(out, p, 4 * n);
    } else if (code == BF16) {
        const byte *p = raw + 2 * lo;
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            uint32_t u;
            float f;
            memcpy(&v, p + 2 * i, 2);
            u = (uint32_t)v << 16;
            memcpy(&f, &u, 4);
            out[i] = f;
        }
    } else { /* F16: every bit pattern's value, looked up */
        const byte *p = raw + 2 * lo;
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            out[i] = (float)table[v];
        }
    }
    for (size_t i = n; i < whole_lanes(n); i++) out[i] = 0.0f;
    return out;
}

/* Entries lo..lo+n of raw as float64, exactly, times scale where it is not
 * 1, padded with 0 to whole lanes (0 * 0 adds nothing). */
BLOCKWISE void decode(const byte *raw, int code, size_t lo, size_t n, const double *table,
                   double scale, double *out) {
    if (code == BF16) {
        const byte *p = raw + 2 * lo;
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            uint32_t u;
            float f;
            memcpy(&v, p + 2 * i, 2);
            u = (uint32_t)v << 16;
            memcpy(&f, &u, 4);
            out[i] = f;
        }
    } else if (code == F16) {
        const byte *p = raw + 2 * lo;
        for (size_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            out[i] = table[v];
        }
    } else if (code == F32) {
        const byte *p = raw + 4 * lo;
        for (size_t i = 0; i < n; i++) {
            float f;
            memcpy(&f, p + 4 * i, 4);
            out[i] = f;
        }
    } else if (code == F64) {
        memcpy(out, raw + 8 * lo, 8 * n);
    } else {
        const double *at = table + (code == F8_E4M3 ? E4M3_AT : E5M2_AT);
        const byte *p = raw + lo;
        for (size_t i = 0; i < n; i++) out[i] = at[p[i]];
    }
    if (scale != 1.0) /* only for a tensor whose sums overflowed */
        for (size_t i = 0; i < n; i++) out[i] *= scale;
    for (size_t i = n; i < whole_lanes(n); i++) out[i] = 0.0;
}

/* The lanes summed pairwise in a fixed order (as kernel._combine). */
INLINE double combine(double *lanes) {
    for (int width = LANES / 2; width >= 1; width /= 2)
        for (int j = 0; j < width; j++) lanes[j] = lanes[j] + lanes[j + width];
    return lanes[0];
}

/* The largest of the lanes (none is NaN). */
INLINE double largest(const double *top) {
    double m = top[0];
    for (int j = 1; j < LANES; j++) m = top[j] > m ? top[j] : m;
    return m;
}

/* Rows of LANES values of T and B (float32 or float64, whole lanes) into the
 * lanes, each lane adding its entries row by row, in float64; max |T| per
 * lane (NaN never is). Four rows at a time (a quarter of the loads and
 * stores of the lanes; each lane still adds row r, then r + 1, ...), as
 * _kernel_numba's _pair_rows. Written once per element type. */
#define PAIR_ROWS(NAME, T)                                                                \
    BLOCKWISE void NAME(const T *restrict t, const T *restrict b, size_t rows,            \
                        double *restrict tt, double *restrict bb, double *restrict tb,    \
                        double *restrict dd, double *restrict top) {                      \
        size_t r = 0;                                                                     \
        for (; r + 4 <= rows; r += 4) {                                                   \
            const T *tr = t + r * LANES, *br = b + r * LANES;                             \
            for (int j = 0; j < LANES; j++) {                                             \
                double x0 = tr[j], x1 = tr[LANES + j], x2 = tr[2 * LANES + j],            \
                       x3 = tr[3 * LANES + j];                                            \
                double y0 = br[j], y1 = br[LANES + j], y2 = br[2 * LANES + j],            \
                       y3 = br[3 * LANES + j];                                            \
                double d0 = x0 - y0, d1 = x1 - y1, d2 = x2 - y2, d3 = x3 - y3;            \
                double m = top[j], a;                                                     \
                tt[j] = (((tt[j] + x0 * x0) + x1 * x1) + x2 * x2) + x3 * x3;              \
                bb[j] = (((bb[j] + y0 * y0) + y1 * y1) + y2 * y2) + y3 * y3;              \
                tb[j] = (((tb[j] + x0 * y0) + x1 * y1) + x2 * y2) + x3 * y3;              \
                dd[j] = (((dd[j] + d0 * d0) + d1 * d1) + d2 * d2) + d3 * d3;              \
                a = fabs(x0), m = a > m ? a : m;                                          \
                a = fabs(x1), m = a > m ? a : m;                                          \
                a = fabs(x2), m = a > m ? a : m;                                          \
                a = fabs(x3), top[j] = a > m ? a : m;                                     \
            }                                                                             \
        }                                                                                 \
        for (; r < rows; r++) {                                                           \
            const T *tr = t + r * LANES, *br = b + r * LANES;                             \
            for (int j = 0; j < LANES; j++) {                                             \
                double x = tr[j], y = br[j], d = x - y, a = fabs(x);                      \
                tt[j] += x * x;                                                           \
                bb[j] += y * y;                                                           \
                tb[j] += x * y;                                                           \
                dd[j] += d * d;                                                           \
                top[j] = a > top[j] ? a : top[j];                                         \
            }                                                                             \
        }                                                                                 \
    }
PAIR_ROWS(pair_rows_f, float)
PAIR_ROWS(pair_rows_d, double)

/* Entries of a block that changed, as kind means it, of the values in
 * float64 (comparisons with NaN are false, as numpy's are); as stored
 * (EXACT with one dtype): bit for bit, of the stored bytes. */
#define COUNT(NAME, T)                                                                    \
    BLOCKWISE int64_t NAME(int kind, double limit, int same, int code, const T *restrict t,  \
                        const T *restrict b, const byte *tbits, const byte *bbits,        \
                        size_t lo, size_t m) {                                            \
        int64_t c = 0;                                                                    \
        if (kind == ABS) {                                                                \
            for (size_t i = 0; i < m; i++) c += fabs((double)t[i] - (double)b[i]) > limit; \
        } else if (kind == REL) {                                                         \
            for (size_t i = 0; i < m; i++) {                                              \
                double x = t[i], y = b[i], s = fabs(x), z = fabs(y);                      \
                c += fabs(x - y) > limit * (s > z ? s : z);                               \
            }                                                                             \
        } else if (same) {                                                                \
            c = count_bits(code, tbits, bbits, lo, m);                                    \
        } else {                                                                          \
            for (size_t i = 0; i < m; i++) c += (double)t[i] != (double)b[i];             \
        }                                                                                 \
        return c;                                                                         \
    }

/* Entries lo..lo+m (m <= BLOCK) whose stored bits differ; each count kept
 * as wide as the entries (m fits), so that the compares stay in vectors. */
BLOCKWISE int64_t count_bits(int code, const byte *t, const byte *b, size_t lo, size_t m) {
    if (code == F64) {
        uint64_t c = 0;
        for (size_t i = lo; i < lo + m; i++) {
            uint64_t x, y;
            memcpy(&x, t + 8 * i, 8);
            memcpy(&y, b + 8 * i, 8);
            c += x != y;
        }
        return (int64_t)c;
    }
    if (code == F32) {
        uint32_t c = 0;
        for (size_t i = lo; i < lo + m; i++) {
            uint32_t x, y;
            memcpy(&x, t + 4 * i, 4);
            memcpy(&y, b + 4 * i, 4);
            c += x != y;
        }
        return (int64_t)c;
    }
    uint16_t c = 0;
    if (code == BF16 || code == F16) {
        for (size_t i = lo; i < lo + m; i++) {
            uint16_t x, y;
            memcpy(&x, t + 2 * i, 2);
            memcpy(&y, b + 2 * i, 2);
            c += x != y;
        }
    } else {
        for (size_t i = lo; i < lo + m; i++) c += t[i] != b[i];
    }
    return (int64_t)c;
}

COUNT(count_f, float)
COUNT(count_d, double)

/* The entries of raw (n of them) that are not finite. */
BLOCKWISE double bad(const byte *raw, int code, size_t n, const double *table) {
    double x[BLOCK];
    int64_t c = 0;
    for (size_t lo = 0; lo < n; lo += BLOCK) {
        size_t m = n - lo < BLOCK ? n - lo : BLOCK;
        decode(raw, code, lo, m, table, 1.0, x);
        for (size_t i = 0; i < m; i++) c += !(fabs(x[i]) < INFINITY);
    }
    return (double)c;
}

/* Every sum of one chunk of a pair (n entries each), written to out: tt, bb,
 * tb, dd, max |T|, the non-finite entries of T and B, then one count per
 * option (its kind options[2k], its limit options[2k + 1]). */
ENTRY void figspec_pair(const void *traw_, int tcode, const void *braw_, int bcode, int same,
                        int64_t n_, const double *opts, int64_t options, const double *table,
                        double scale, double *out) {
    const byte *traw = traw_, *braw = braw_;
    size_t n = (size_t)n_;
    double tt[LANES] = {0}, bb[LANES] = {0}, tb[LANES] = {0}, dd[LANES] = {0},
           top[LANES] = {0};
    for (int64_t k = 0; k < options; k++) out[7 + k] = 0.0;
    if (scale == 1.0 && is_float32(tcode) && is_float32(bcode)) { /* read as float32 */
        float ts[BLOCK], bs[BLOCK];
        for (size_t lo = 0; lo < n; lo += BLOCK) {
            size_t m = n - lo < BLOCK ? n - lo : BLOCK;
            const float *t = narrow(traw, tcode, lo, m, table, ts);
            const float *b = narrow(braw, bcode, lo, m, table, bs);
            pair_rows_f(t, b, whole_lanes(m) / LANES, tt, bb, tb, dd, top);
            for (int64_t k = 0; k < options; k++)  /* exact: counts under 2**53 */
                out[7 + k] += (double)count_f((int)opts[2 * k], opts[2 * k + 1], same, tcode, t, b,
                                              traw, braw, lo, m);
        }
    } else { /* float64 values, or scaled (exact in float64 alone) */
        double ts[BLOCK], bs[BLOCK];
        for (size_t lo = 0; lo < n; lo += BLOCK) {
            size_t m = n - lo < BLOCK ? n - lo : BLOCK;
            decode(traw, tcode, lo, m, table, scale, ts);
            decode(braw, bcode, lo, m, table, scale, bs);
            pair_rows_d(ts, bs, whole_lanes(m) / LANES, tt, bb, tb, dd, top);
            for (int64_t k = 0; k < options; k++)
                out[7 + k] += (double)count_d((int)opts[2 * k], opts[2 * k + 1], same, tcode, ts, bs,
                                              traw, braw, lo, m);
        }
    }
    out[0] = combine(tt);
    out[1] = combine(bb);
    out[2] = combine(tb);
    out[3] = combine(dd);
    out[4] = largest(top);
    /* A non-finite entry makes its side's sum of squares non-finite: only
     * then are they counted, in a second pass (rare: it is an error). */
    out[5] = out[0] < INFINITY ? 0.0 : bad(traw, tcode, n, table);
    out[6] = out[1] < INFINITY ? 0.0 : bad(braw, bcode, n, table);
}

/* Rows of LANES values of T into the lanes: tt, max |T|, the entries not
 * finite (the padding is 0: it adds nothing, and is finite); four rows at a
 * time, as pair_rows. */
#define SINGLE_ROWS(NAME, T)                                                              \
    BLOCKWISE void NAME(const T *restrict t, size_t rows, double *restrict tt,            \
                        double *restrict top, int64_t *restrict bad) {                    \
        size_t r = 0;                                                                     \
        for (; r + 4 <= rows; r += 4) {                                                   \
            const T *tr = t + r * LANES;                                                  \
            for (int j = 0; j < LANES; j++) {                                             \
                double x0 = tr[j], x1 = tr[LANES + j], x2 = tr[2 * LANES + j],            \
                       x3 = tr[3 * LANES + j];                                            \
                double a0 = fabs(x0), a1 = fabs(x1), a2 = fabs(x2), a3 = fabs(x3);        \
                double m = top[j];                                                        \
                tt[j] = (((tt[j] + x0 * x0) + x1 * x1) + x2 * x2) + x3 * x3;              \
                m = a0 > m ? a0 : m;                                                      \
                m = a1 > m ? a1 : m;                                                      \
                m = a2 > m ? a2 : m;                                                      \
                top[j] = a3 > m ? a3 : m;                                                 \
                bad[j] += (int64_t)!(a0 < INFINITY) + !(a1 < INFINITY) +                  \
                          !(a2 < INFINITY) + !(a3 < INFINITY);                            \
            }                                                                             \
        }                                                                                 \
        for (; r < rows; r++) {                                                           \
            const T *tr = t + r * LANES;                                                  \
            for (int j = 0; j < LANES; j++) {                                             \
                double x = tr[j], a = fabs(x);                                            \
                tt[j] += x * x;                                                           \
                top[j] = a > top[j] ? a : top[j];                                         \
                bad[j] += !(a < INFINITY);                                                \
            }                                                                             \
        }                                                                                 \
    }
SINGLE_ROWS(single_rows_f, float)
SINGLE_ROWS(single_rows_d, double)

/* The sums of one chunk of a tensor alone: out[0] tt, out[4] max |T|,
 * out[5] its non-finite entries; the rest are left as they are (0). */
ENTRY void figspec_single(const void *traw_, int tcode, int64_t n_, const double *table,
                          double scale, double *out) {
    const byte *traw = traw_;
    size_t n = (size_t)n_;
    double tt[LANES] = {0}, top[LANES] = {0};
    int64_t lanes_bad[LANES] = {0}, count = 0;
    if (scale == 1.0 && is_float32(tcode)) {
        float ts[BLOCK];
        for (size_t lo = 0; lo < n; lo += BLOCK) {
            size_t m = n - lo < BLOCK ? n - lo : BLOCK;
            single_rows_f(narrow(traw, tcode, lo, m, table, ts), whole_lanes(m) / LANES, tt,
                          top, lanes_bad);
        }
    } else {
        double ts[BLOCK];
        for (size_t lo = 0; lo < n; lo += BLOCK) {
            size_t m = n - lo < BLOCK ? n - lo : BLOCK;
            decode(traw, tcode, lo, m, table, scale, ts);
            single_rows_d(ts, whole_lanes(m) / LANES, tt, top, lanes_bad);
        }
    }
    for (int j = 0; j < LANES; j++) count += lanes_bad[j];
    out[0] = combine(tt);
    out[4] = largest(top);
    out[5] = (double)count;
}

/* Rows of LANES values of T, O and B into the lanes: with U = T - B,
 * V = O - B and W = T - O, each lane's ||U||^2, ||V||^2, <U, V>, ||W||^2;
 * two rows at a time, as pair_rows. */
#define TRIPLE_ROWS(NAME, T)                                                              \
    BLOCKWISE void NAME(const T *restrict t, const T *restrict o, const T *restrict b,    \
                        size_t rows, double *restrict uu, double *restrict vv,            \
                        double *restrict uv, double *restrict ww) {                       \
        size_t r = 0;                                                                     \
        for (; r + 2 <= rows; r += 2) {                                                   \
            const T *tr = t + r * LANES, *orow = o + r * LANES, *br = b + r * LANES;      \
            for (int j = 0; j < LANES; j++) {                                             \
                double x0 = tr[j], y0 = orow[j], z0 = br[j];                              \
                double x1 = tr[LANES + j], y1 = orow[LANES + j], z1 = br[LANES + j];      \
                double u0 = x0 - z0, v0 = y0 - z0, w0 = x0 - y0;                          \
                double u1 = x1 - z1, v1 = y1 - z1, w1 = x1 - y1;                          \
                uu[j] = (uu[j] + u0 * u0) + u1 * u1;                                      \
                vv[j] = (vv[j] + v0 * v0) + v1 * v1;                                      \
                uv[j] = (uv[j] + u0 * v0) + u1 * v1;                                      \
                ww[j] = (ww[j] + w0 * w0) + w1 * w1;                                      \
            }                                                                             \
        }                                                                                 \
        for (; r < rows; r++) {                                                           \
            const T *tr = t + r * LANES, *orow = o + r * LANES, *br = b + r * LANES;      \
            for (int j = 0; j < LANES; j++) {                                             \
                double x = tr[j], y = orow[j], z = br[j];                                 \
                double u = x - z, v = y - z, w = x - y;                                   \
                uu[j] += u * u;                                                           \
                vv[j] += v * v;                                                           \
                uv[j] += u * v;                                                           \
                ww[j] += w * w;                                                           \
            }                                                                             \
        }                                                                                 \
    }
TRIPLE_ROWS(triple_rows_f, float)
TRIPLE_ROWS(triple_rows_d, double)

/* The sums of one chunk of two runs' tensors T, O and their base B (n
 * entries each), written to out: ||U||^2, ||V||^2, <U, V>, ||W||^2, then
 * the non-finite entries of T, O and B, counted only where a sum of squares
 * is not finite (a non-finite entry of any side makes one so; else left 0). */
ENTRY void figspec_triple(const void *traw_, int tcode, const void *oraw_, int ocode,
                          const void *braw_, int bcode, int64_t n_, const double *table,
                          double scale, double *out) {
    const byte *traw = traw_, *oraw = oraw_, *braw = braw_;
    size_t n = (size_t)n_;
    double uu[LANES] = {0}, vv[LANES] = {0}, uv[LANES] = {0}, ww[LANES] = {0};
    if (scale == 1.0 && is_float32(tcode) && is_float32(ocode) && is_float32(bcode)) {
        float ts[BLOCK], os[BLOCK], bs[BLOCK];
        for (size_t lo = 0; lo < n; lo += BLOCK) {
            size_t m = n - lo < BLOCK ? n - lo : BLOCK;
            triple_rows_f(narrow(traw, tcode, lo, m, table, ts),
                          narrow(oraw, ocode, lo, m, table, os),
                          narrow(braw, bcode, lo, m, table, bs), whole_lanes(m) / LANES, uu,
                          vv, uv, ww);
        }
    } else {
        double ts[BLOCK], os[BLOCK], bs[BLOCK];
        for (size_t lo = 0; lo < n; lo += BLOCK) {
            size_t m = n - lo < BLOCK ? n - lo : BLOCK;
            decode(traw, tcode, lo, m, table, scale, ts);
            decode(oraw, ocode, lo, m, table, scale, os);
            decode(braw, bcode, lo, m, table, scale, bs);
            triple_rows_d(ts, os, bs, whole_lanes(m) / LANES, uu, vv, uv, ww);
        }
    }
    out[0] = combine(uu);
    out[1] = combine(vv);
    out[2] = combine(uv);
    out[3] = combine(ww);
    if (!(out[0] < INFINITY && out[1] < INFINITY && out[3] < INFINITY)) {
        out[4] = bad(traw, tcode, n, table);
        out[5] = bad(oraw, ocode, n, table);
        out[6] = bad(braw, bcode, n, table);
    }
}

/* What this source's entry points are (checked after loading). */
int figspec_kernel_abi(void) { return ABI; }
