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
 * F16 and FP8 by a float64 table (figspec_values fills the one the C path
 * passes; kernel._values() makes numba's), F32 and F64 as
 * they are (read with memcpy: stored bytes need not be aligned). BF16, F16
 * and F32 values are float32s, so where no scale is asked they are read as
 * float32 and widened in the loop that sums them; otherwise (F64, FP8, a
 * scale) they go through float64 scratch, each value times the scale there.
 *
 * The common cases are fused (pair_fused, single_fused_bf16): a pair of one
 * of BF16, F16, F32 with no option but "changed as stored", and a BF16
 * tensor alone. They read each stored entry once, decoding it where it is
 * summed and comparing its bits there, with no float32 scratch and no
 * second pass for the count; a block's whole rows are taken GROUP lanes at
 * a time, so that those lanes' sums stay in registers through the block,
 * and the next block is asked for ahead (AHEAD) while this one is summed.
 * The order of every sum is the same as the scratch path's; the entries
 * after the last whole row go through it. On x86-64 with AVX2 and FMA,
 * BF16 tensors take loops written with intrinsics instead (pair_avx2_bf16
 * and the two after it), the same sums in the same order. Measured in docs/performance.md ("The
 * fused kernel").
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
/* Bytes of each side that the fused loops take at a time (1,024 BF16
 * entries, 512 F32): the block and the next, asked for ahead, a few KB of
 * the L1 cache. Measured: spans of 4 and 8 KB were slower (F32 pair: 11 GB/s
 * at 2 KB, 8 at 4 KB), 1 KB no faster. */
#ifndef SPAN
#define SPAN 2048
#endif
/* Lanes whose running sums stay in registers through a block's rows (the
 * fused loops): 16 float64s per sum, four 256-bit vectors. */
#define GROUP 16
#define ABI 4
/* The most options (kinds of "changed") a chunked call takes (a spec asks
 * one or two). */
#define MAX_OPTIONS 16

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
 * AVX-512 (x86-64-v4: with AVX512VL, so that 256-bit vectors have 32
 * registers, not 16; the fused loops' sums spilled to the stack with 16),
 * AVX2 and the baseline, chosen when the library is loaded (a shared home is
 * read by machines of different processors). Asked for by _kernel_c.py
 * where it knows the compiler and loader support it. "arch=x86-64-v4" is
 * asked of GCC 12 and later, which take it (checked with 12.2); of Clang and
 * older GCCs, not known to, AVX512F alone, as before. */
#if defined(FIGSPEC_CLONES) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#elif defined(FIGSPEC_CLONES) /* Clang, an older GCC: as before, AVX512F alone */
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

/* Stored entry i's bits (little endian, unaligned). */
INLINE uint32_t bits16(const byte *p, size_t i) {
    uint16_t v;
    memcpy(&v, p + 2 * i, 2);
    return v;
}
INLINE uint32_t bits32(const byte *p, size_t i) {
    uint32_t v;
    memcpy(&v, p + 4 * i, 4);
    return v;
}

/* The float32 value of stored bits, exactly: BF16 is the top half of a
 * float32, F16 looked up, F32 itself. */
INLINE float as_float(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
INLINE float bf16_value(uint32_t v, const double *table) {
    (void)table;
    return as_float(v << 16);
}
INLINE float f16_value(uint32_t v, const double *table) { return (float)table[v]; }
INLINE float f32_value(uint32_t v, const double *table) {
    (void)table;
    return as_float(v);
}

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
        for (size_t i = 0; i < n; i++) out[i] = bf16_value(bits16(p, i), table);
    } else { /* F16: every bit pattern's value, looked up */
        const byte *p = raw + 2 * lo;
        for (size_t i = 0; i < n; i++) out[i] = f16_value(bits16(p, i), table);
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
        for (size_t i = 0; i < n; i++) out[i] = bf16_value(bits16(p, i), table);
    } else if (code == F16) {
        const byte *p = raw + 2 * lo;
        for (size_t i = 0; i < n; i++) out[i] = table[bits16(p, i)];
    } else if (code == F32) {
        const byte *p = raw + 4 * lo;
        for (size_t i = 0; i < n; i++) out[i] = f32_value(bits32(p, i), table);
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

/* The fused loops: the common cases (BF16, F16 or F32 on both sides, no
 * scale, at most "changed as stored") read the stored entries once, decoding
 * each where it is summed, with no float32 scratch and no second pass for
 * the changed count. The order of the sums is the one above: a block's
 * whole rows are taken GROUP lanes at a time, each lane adding its entries
 * row by row, so that the lanes' running sums stay in registers through the
 * block instead of being loaded and stored each row. */

/* Where a block's loop reads p, it asks for p + ahead too: the same place
 * in the next block (the next chunk's first, past the last block), so that
 * the next block is on its way while this one is summed; the processor's
 * own prefetcher did not keep up with the loops' strides (BF16 pair with
 * the count: 5.5 GB/s without it, 7.1 with). Only an address: a prefetch
 * past the end of the mapping does nothing. */
#if defined(__GNUC__) || defined(__clang__)
#define AHEAD(p, ahead) __builtin_prefetch((const void *)((uintptr_t)(p) + (ahead)))
#else
#define AHEAD(p, ahead) ((void)0)
#endif
/* GCC unrolls a short loop over a group's lanes whole before it vectorises
 * loops, and then fails to vectorise the straight code (single_fused_bf16:
 * 3x slower): asked not to, it vectorises the loop itself. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define UNROLLED_NOT _Pragma("GCC unroll 1")
#else
#define UNROLLED_NOT
#endif

/* A pair's running sums, per lane, and the entries whose bits differ. */
struct pair_lanes {
    double tt[LANES], bb[LANES], tb[LANES], dd[LANES], top[LANES];
    int64_t changed;
};

/* Which lane of a group each slot of its vectors is: in order, or (BF16)
 * the even lanes, then the odd ones. */
static const int IN_ORDER[GROUP] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
static const int EVEN_ODD[GROUP] = {0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15};

/* The running sums of GROUP lanes, held in registers through a block. */
struct pair_group {
    double tt[GROUP], bb[GROUP], tb[GROUP], dd[GROUP];
    float top[GROUP]; /* max |T| as float32: |x| of a float32 is one, and
                       * compares as it would widened */
    uint32_t changed[GROUP]; /* a block's count fits; as wide as the entries'
                              * float32s, so that the compares stay in vectors */
};

/* Lane k of a group adds the next entry of T and B (bits u and v, values
 * xf and yf) to its sums, as pair_rows does. */
INLINE void pair_add(struct pair_group *restrict q, int k, float xf, float yf, uint32_t u,
                     uint32_t v, const int count) {
    double x = xf, y = yf, d = x - y;
    float a = fabsf(xf);
    q->tt[k] += x * x;
    q->bb[k] += y * y;
    q->tb[k] += x * y;
    q->dd[k] += d * d;
    q->top[k] = a > q->top[k] ? a : q->top[k];
    if (count) q->changed[k] += u != v;
}

/* A group's sums from lanes g.. of s; back to s, in lane order perm. */
INLINE void group_in(struct pair_group *restrict q, const struct pair_lanes *s, int g,
                     const int *perm) {
    for (int k = 0; k < GROUP; k++) {
        int j = g + perm[k];
        q->tt[k] = s->tt[j], q->bb[k] = s->bb[j], q->tb[k] = s->tb[j], q->dd[k] = s->dd[j];
        q->top[k] = (float)s->top[j], q->changed[k] = 0;
    }
}
INLINE void group_out(const struct pair_group *q, struct pair_lanes *s, int g, const int *perm) {
    for (int k = 0; k < GROUP; k++) {
        int j = g + perm[k];
        s->tt[j] = q->tt[k], s->bb[j] = q->bb[k], s->tb[j] = q->tb[k], s->dd[j] = q->dd[k];
        s->top[j] = q->top[k], s->changed += q->changed[k];
    }
}

/* Whole rows of LANES stored entries of T and B (rows <= SPAN / WIDTH /
 * LANES) into the lanes; the entries whose bits differ counted where count is 1
 * (a constant: the compares are dropped where none is asked). F16 and F32:
 * lane k of a group is the group's k-th entry of each row. */
#define PAIR_FUSED(NAME, WIDTH, BITS, VALUE)                                              \
    INLINE void NAME##_body(const byte *restrict t, const byte *restrict b, size_t rows,  \
                            const double *table, const int count,                         \
                            struct pair_lanes *restrict s) {                              \
        for (int g = 0; g < LANES; g += GROUP) {                                          \
            struct pair_group q;                                                          \
            group_in(&q, s, g, IN_ORDER);                                                 \
            for (size_t r = 0; r < rows; r++) {                                           \
                size_t at = r * LANES + (size_t)g;                                        \
                AHEAD(t + WIDTH * at, SPAN), AHEAD(b + WIDTH * at, SPAN);                 \
                for (int k = 0; k < GROUP; k++) {                                         \
                    uint32_t u = BITS(t, at + k), v = BITS(b, at + k);                    \
                    pair_add(&q, k, VALUE(u, table), VALUE(v, table), u, v, count);       \
                }                                                                         \
            }                                                                             \
            group_out(&q, s, g, IN_ORDER);                                                \
        }                                                                                 \
    }                                                                                     \
    BLOCKWISE void NAME(const byte *t, const byte *b, size_t rows, const double *table,   \
                        int count, struct pair_lanes *s) {                                \
        if (count)                                                                        \
            NAME##_body(t, b, rows, table, 1, s);                                         \
        else                                                                              \
            NAME##_body(t, b, rows, table, 0, s);                                         \
    }
PAIR_FUSED(pair_fused_f16, 2, bits16, f16_value)
PAIR_FUSED(pair_fused_f32, 4, bits32, f32_value)

/* BF16: a 32-bit word holds two entries, the even one in its low half, and
 * a BF16 is the top half of its float32: the even's is the word shifted
 * left 16, the odd's the word with its low half cleared; no shuffle. So the
 * group's first GROUP / 2 slots are its even lanes, the rest its odd ones
 * (each slot still one lane, adding that lane's entries row by row). */
INLINE void pair_fused_bf16_body(const byte *restrict t, const byte *restrict b, size_t rows,
                                 const int count, struct pair_lanes *restrict s) {
    enum { HALF = GROUP / 2 };
    for (int g = 0; g < LANES; g += GROUP) {
        struct pair_group q;
        group_in(&q, s, g, EVEN_ODD);
        for (size_t r = 0; r < rows; r++) {
            size_t at = 2 * (r * LANES + (size_t)g);
            const byte *tr = t + at, *br = b + at;
            AHEAD(tr, SPAN), AHEAD(br, SPAN);
            for (int k = 0; k < HALF; k++) {
                uint32_t wt = bits32(tr, (size_t)k), wb = bits32(br, (size_t)k);
                uint32_t te = wt << 16, be = wb << 16;
                uint32_t to = wt & 0xffff0000u, bo = wb & 0xffff0000u;
                pair_add(&q, k, as_float(te), as_float(be), te, be, count);
                pair_add(&q, HALF + k, as_float(to), as_float(bo), to, bo, count);
            }
        }
        group_out(&q, s, g, EVEN_ODD);
    }
}
BLOCKWISE void pair_fused_bf16(const byte *t, const byte *b, size_t rows, const double *table,
                               int count, struct pair_lanes *s) {
    (void)table;
    if (count)
        pair_fused_bf16_body(t, b, rows, 1, s);
    else
        pair_fused_bf16_body(t, b, rows, 0, s);
}

/* BF16 tensors (a pair, one alone, two runs and their base) on x86-64
 * processors with AVX2 and FMA, by intrinsics. The pair's loop above,
 * vectorised by the compiler, spilled its sums to the stack and
 * converted each float32 to float64 through memory (4.8 GB/s on a Zen 2 in
 * memory, one thread); written out, the sums of a group of 8 lanes (two
 * vectors of four float64s each) stay in AVX2's 16 registers: 9 GB/s.
 *
 * The same bits: each lane still adds its entries row by row, x * x rounded
 * and then added. tt, bb and tb add their products by fused multiply-adds,
 * which round once, where x * x and then + round twice; but the product of
 * two float32 values is exact in float64 (24 + 24 significant bits of 53,
 * exponents far inside float64's), so its rounding changes nothing, and
 * fma(x, y, s) is s + x * y to the bit (a NaN's payload aside: a NaN sum is
 * an error whatever its bits). dd's d * d is not exact (d = x - y is
 * rounded): it is multiplied, then added, as everywhere. */
#if defined(FIGSPEC_CLONES) && (defined(__x86_64__) || defined(__i386__)) &&                  \
    (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 5))
#include <immintrin.h>
#define AVX2_LOOPS 1
#define AVX2 __attribute__((target("avx2,fma")))

/* Eight lanes' running sums: the even lanes' four (g, g + 2, g + 4, g + 6),
 * then the odd lanes' (g + 1, ...), as a row's BF16 words hold them. */
struct eight {
    double tt[8], bb[8], tb[8], dd[8];
    float top[8];
    int32_t same[4]; /* entries whose bits are the same, by pairs of lanes */
};

/* Lane j's place in its group's struct eight (group j / 8). */
INLINE int slot(int j) { return j % 2 * 4 + j % 8 / 2; }

/* Four lanes add T's and B's next entries (float32 bits u and v). */
#define ADD_FOUR(S, u, v)                                                                 \
    do {                                                                                  \
        __m256d x = _mm256_cvtps_pd(_mm_castsi128_ps(u));                                 \
        __m256d y = _mm256_cvtps_pd(_mm_castsi128_ps(v)), d = _mm256_sub_pd(x, y);        \
        tt##S = _mm256_fmadd_pd(x, x, tt##S);                                             \
        bb##S = _mm256_fmadd_pd(y, y, bb##S);                                             \
        tb##S = _mm256_fmadd_pd(x, y, tb##S);                                             \
        dd##S = _mm256_add_pd(dd##S, _mm256_mul_pd(d, d));                                \
        /* maxps(a, m) is a > m ? a : m, as everywhere (a NaN never is) */                \
        top##S = _mm_max_ps(_mm_castsi128_ps(_mm_and_si128(u, magnitude)), top##S);      \
    } while (0)

/* Rows lo..hi (fewer than 2**15) of group g's 8 lanes into e, the sums
 * held in registers throughout. */
INLINE AVX2 void eight_rows(const byte *restrict t, const byte *restrict b, size_t lo,
                            size_t hi, int g, const int count, struct eight *restrict e) {
    const __m128i odd = _mm_set1_epi32((int)0xffff0000u);
    const __m128i magnitude = _mm_set1_epi32(0x7fffffff);
    __m256d tt0 = _mm256_loadu_pd(e->tt), tt1 = _mm256_loadu_pd(e->tt + 4);
    __m256d bb0 = _mm256_loadu_pd(e->bb), bb1 = _mm256_loadu_pd(e->bb + 4);
    __m256d tb0 = _mm256_loadu_pd(e->tb), tb1 = _mm256_loadu_pd(e->tb + 4);
    __m256d dd0 = _mm256_loadu_pd(e->dd), dd1 = _mm256_loadu_pd(e->dd + 4);
    __m128 top0 = _mm_loadu_ps(e->top), top1 = _mm_loadu_ps(e->top + 4);
    __m128i same = _mm_setzero_si128(); /* 16 bits a lane */
    for (size_t r = lo; r < hi; r++) {
        size_t at = 2 * (r * LANES + 8 * (size_t)g);
        __m128i wt = _mm_loadu_si128((const __m128i *)(const void *)(t + at));
        __m128i wb = _mm_loadu_si128((const __m128i *)(const void *)(b + at));
        AHEAD(t + at, SPAN), AHEAD(b + at, SPAN);
        ADD_FOUR(0, _mm_slli_epi32(wt, 16), _mm_slli_epi32(wb, 16));
        ADD_FOUR(1, _mm_and_si128(wt, odd), _mm_and_si128(wb, odd));
        if (count) same = _mm_sub_epi16(same, _mm_cmpeq_epi16(wt, wb));
    }
    _mm256_storeu_pd(e->tt, tt0), _mm256_storeu_pd(e->tt + 4, tt1);
    _mm256_storeu_pd(e->bb, bb0), _mm256_storeu_pd(e->bb + 4, bb1);
    _mm256_storeu_pd(e->tb, tb0), _mm256_storeu_pd(e->tb + 4, tb1);
    _mm256_storeu_pd(e->dd, dd0), _mm256_storeu_pd(e->dd + 4, dd1);
    _mm_storeu_ps(e->top, top0), _mm_storeu_ps(e->top + 4, top1);
    if (count) {
        __m128i pairs = _mm_loadu_si128((const __m128i *)(const void *)e->same);
        pairs = _mm_add_epi32(pairs, _mm_madd_epi16(same, _mm_set1_epi16(1)));
        _mm_storeu_si128((__m128i *)(void *)e->same, pairs);
    }
}

INLINE AVX2 void pair_avx2_body(const byte *restrict t, const byte *restrict b, size_t rows,
                                const int count, struct eight *restrict es) {
    size_t block = SPAN / 2 / LANES;
    for (size_t lo = 0; lo < rows; lo += block)
        for (int g = 0; g < LANES / 8; g++)
            eight_rows(t, b, lo, rows - lo < block ? rows : lo + block, g, count, es + g);
}

/* Rows of LANES BF16 entries of T and B (at most AVX2_ROWS: each pair of
 * lanes' count fits an int32) into s, as pair_fused_bf16 takes a block's. */
#define AVX2_ROWS ((size_t)1 << 24)
static AVX2 OUTLINE void pair_avx2_bf16(const byte *t, const byte *b, size_t rows, int count,
                                        struct pair_lanes *s) {
    struct eight es[LANES / 8];
    int64_t same = 0;
    memset(es, 0, sizeof es);
    for (int j = 0; j < LANES; j++) {
        struct eight *e = es + j / 8;
        int k = slot(j);
        e->tt[k] = s->tt[j], e->bb[k] = s->bb[j], e->tb[k] = s->tb[j], e->dd[k] = s->dd[j];
        e->top[k] = (float)s->top[j];
    }
    if (count)
        pair_avx2_body(t, b, rows, 1, es);
    else
        pair_avx2_body(t, b, rows, 0, es);
    for (int j = 0; j < LANES; j++) {
        const struct eight *e = es + j / 8;
        int k = slot(j);
        s->tt[j] = e->tt[k], s->bb[j] = e->bb[k], s->tb[j] = e->tb[k], s->dd[j] = e->dd[k];
        s->top[j] = e->top[k];
    }
    for (int g = 0; g < LANES / 8; g++)
        for (int k = 0; k < 4; k++) same += es[g].same[k];
    if (count) s->changed += (int64_t)rows * LANES - same;
}

/* Rows lo..hi (fewer than 2**15) of group g's 8 lanes of a BF16 tensor
 * alone into e's tt and top, as single_fused_bf16 takes them (tt by fused
 * multiply-adds: x * x is exact); its entries that are not finite. */
INLINE AVX2 int64_t eight_alone(const byte *restrict t, size_t lo, size_t hi, int g,
                                struct eight *restrict e) {
    const __m128i odd = _mm_set1_epi32((int)0xffff0000u);
    const __m128i magnitude = _mm_set1_epi32(0x7fffffff), exponent = _mm_set1_epi16(0x7f80);
    __m256d tt0 = _mm256_loadu_pd(e->tt), tt1 = _mm256_loadu_pd(e->tt + 4);
    __m128 top0 = _mm_loadu_ps(e->top), top1 = _mm_loadu_ps(e->top + 4);
    __m128i bad = _mm_setzero_si128(); /* 16 bits a lane */
    int32_t pairs[4];
    for (size_t r = lo; r < hi; r++) {
        const byte *at = t + 2 * (r * LANES + 8 * (size_t)g);
        __m128i w = _mm_loadu_si128((const __m128i *)(const void *)at);
        __m128i even = _mm_slli_epi32(w, 16), high = _mm_and_si128(w, odd);
        __m256d x0 = _mm256_cvtps_pd(_mm_castsi128_ps(even));
        __m256d x1 = _mm256_cvtps_pd(_mm_castsi128_ps(high));
        AHEAD(at, SPAN);
        tt0 = _mm256_fmadd_pd(x0, x0, tt0);
        tt1 = _mm256_fmadd_pd(x1, x1, tt1);
        top0 = _mm_max_ps(_mm_castsi128_ps(_mm_and_si128(even, magnitude)), top0);
        top1 = _mm_max_ps(_mm_castsi128_ps(_mm_and_si128(high, magnitude)), top1);
        /* not finite: the exponent's bits all set */
        bad = _mm_sub_epi16(bad, _mm_cmpeq_epi16(_mm_and_si128(w, exponent), exponent));
    }
    _mm256_storeu_pd(e->tt, tt0), _mm256_storeu_pd(e->tt + 4, tt1);
    _mm_storeu_ps(e->top, top0), _mm_storeu_ps(e->top + 4, top1);
    _mm_storeu_si128((__m128i *)(void *)pairs, _mm_madd_epi16(bad, _mm_set1_epi16(1)));
    return (int64_t)pairs[0] + pairs[1] + pairs[2] + pairs[3];
}

/* Whole rows of LANES BF16 entries of a tensor alone into the lanes (tt,
 * top; bad[0] its entries not finite), as single_fused_bf16. */
static AVX2 OUTLINE void single_avx2_bf16(const byte *t, size_t rows, double *tt, double *top,
                                          int64_t *bad) {
    struct eight es[LANES / 8];
    size_t block = SPAN / 2 / LANES;
    memset(es, 0, sizeof es);
    for (int j = 0; j < LANES; j++)
        es[j / 8].tt[slot(j)] = tt[j], es[j / 8].top[slot(j)] = (float)top[j];
    for (size_t lo = 0; lo < rows; lo += block)
        for (int g = 0; g < LANES / 8; g++)
            bad[0] += eight_alone(t, lo, rows - lo < block ? rows : lo + block, g, es + g);
    for (int j = 0; j < LANES; j++) tt[j] = es[j / 8].tt[slot(j)], top[j] = es[j / 8].top[slot(j)];
}

/* Four lanes add the next entries of T, O and B (float32 bits): with
 * U = T - B, V = O - B and W = T - O, ||U||^2, ||V||^2, <U, V>, ||W||^2 (as
 * triple_rows; the differences are rounded: multiplied, then added). */
#define ADD_THREE(S, ut, uo, ub)                                                          \
    do {                                                                                  \
        __m256d x = _mm256_cvtps_pd(_mm_castsi128_ps(ut));                                \
        __m256d y = _mm256_cvtps_pd(_mm_castsi128_ps(uo));                                \
        __m256d z = _mm256_cvtps_pd(_mm_castsi128_ps(ub));                                \
        __m256d u = _mm256_sub_pd(x, z), v = _mm256_sub_pd(y, z), w = _mm256_sub_pd(x, y); \
        uu##S = _mm256_add_pd(uu##S, _mm256_mul_pd(u, u));                                \
        vv##S = _mm256_add_pd(vv##S, _mm256_mul_pd(v, v));                                \
        uv##S = _mm256_add_pd(uv##S, _mm256_mul_pd(u, v));                                \
        ww##S = _mm256_add_pd(ww##S, _mm256_mul_pd(w, w));                                \
    } while (0)

/* Rows lo..hi of group g's 8 lanes of BF16 T, O and B into e (uu, vv, uv,
 * ww in its tt, bb, tb, dd). */
INLINE AVX2 void eight_triple(const byte *restrict t, const byte *restrict o,
                              const byte *restrict b, size_t lo, size_t hi, int g,
                              struct eight *restrict e) {
    const __m128i odd = _mm_set1_epi32((int)0xffff0000u);
    __m256d uu0 = _mm256_loadu_pd(e->tt), uu1 = _mm256_loadu_pd(e->tt + 4);
    __m256d vv0 = _mm256_loadu_pd(e->bb), vv1 = _mm256_loadu_pd(e->bb + 4);
    __m256d uv0 = _mm256_loadu_pd(e->tb), uv1 = _mm256_loadu_pd(e->tb + 4);
    __m256d ww0 = _mm256_loadu_pd(e->dd), ww1 = _mm256_loadu_pd(e->dd + 4);
    for (size_t r = lo; r < hi; r++) {
        size_t at = 2 * (r * LANES + 8 * (size_t)g);
        __m128i wt = _mm_loadu_si128((const __m128i *)(const void *)(t + at));
        __m128i wo = _mm_loadu_si128((const __m128i *)(const void *)(o + at));
        __m128i wb = _mm_loadu_si128((const __m128i *)(const void *)(b + at));
        AHEAD(t + at, SPAN), AHEAD(o + at, SPAN), AHEAD(b + at, SPAN);
        ADD_THREE(0, _mm_slli_epi32(wt, 16), _mm_slli_epi32(wo, 16), _mm_slli_epi32(wb, 16));
        ADD_THREE(1, _mm_and_si128(wt, odd), _mm_and_si128(wo, odd), _mm_and_si128(wb, odd));
    }
    _mm256_storeu_pd(e->tt, uu0), _mm256_storeu_pd(e->tt + 4, uu1);
    _mm256_storeu_pd(e->bb, vv0), _mm256_storeu_pd(e->bb + 4, vv1);
    _mm256_storeu_pd(e->tb, uv0), _mm256_storeu_pd(e->tb + 4, uv1);
    _mm256_storeu_pd(e->dd, ww0), _mm256_storeu_pd(e->dd + 4, ww1);
}

/* Whole rows of LANES BF16 entries of T, O and B into the lanes, as
 * triple_rows_f takes them. */
static AVX2 OUTLINE void triple_avx2_bf16(const byte *t, const byte *o, const byte *b,
                                          size_t rows, double *uu, double *vv, double *uv,
                                          double *ww) {
    struct eight es[LANES / 8];
    size_t block = SPAN / 2 / LANES;
    memset(es, 0, sizeof es);
    for (int j = 0; j < LANES; j++) {
        struct eight *e = es + j / 8;
        int k = slot(j);
        e->tt[k] = uu[j], e->bb[k] = vv[j], e->tb[k] = uv[j], e->dd[k] = ww[j];
    }
    for (size_t lo = 0; lo < rows; lo += block)
        for (int g = 0; g < LANES / 8; g++)
            eight_triple(t, o, b, lo, rows - lo < block ? rows : lo + block, g, es + g);
    for (int j = 0; j < LANES; j++) {
        const struct eight *e = es + j / 8;
        int k = slot(j);
        uu[j] = e->tt[k], vv[j] = e->bb[k], uv[j] = e->tb[k], ww[j] = e->dd[k];
    }
}

/* Whether this processor (and its system) runs AVX2 and FMA. */
INLINE int has_avx2_fma(void) {
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

/* Whether a pair takes the fused loops: one float32 dtype on both sides, no
 * scale, and no option but "changed as stored". */
INLINE int fusable(int tcode, int bcode, double scale, const double *opts, int64_t options) {
    if (scale != 1.0 || tcode != bcode || !is_float32(tcode)) return 0;
    for (int64_t k = 0; k < options; k++)
        if ((int)opts[2 * k] != EXACT) return 0;
    return 1;
}

/* A pair's sums by the fused loops: its whole rows block by block, then the
 * last entries (fewer than a row) through scratch, padded, as the other
 * path takes them; one count for every option (each is "as stored"). */
static void pair_fused(const byte *traw, const byte *braw, int code, size_t n, int count,
                       const double *table, struct pair_lanes *s) {
    size_t width = code == F32 ? 4 : 2, whole = n / LANES * LANES, block = SPAN / width, lo = 0;
#ifdef AVX2_LOOPS
    if (code == BF16 && has_avx2_fma())
        for (size_t most = AVX2_ROWS * LANES; lo < whole; lo += most) {
            size_t rows = (whole - lo < most ? whole - lo : most) / LANES;
            pair_avx2_bf16(traw + 2 * lo, braw + 2 * lo, rows, count, s);
        }
#endif
    for (; lo < whole; lo += block) {
        size_t rows = (whole - lo < block ? whole - lo : block) / LANES;
        const byte *t = traw + width * lo, *b = braw + width * lo;
        if (code == BF16)
            pair_fused_bf16(t, b, rows, table, count, s);
        else if (code == F16)
            pair_fused_f16(t, b, rows, table, count, s);
        else
            pair_fused_f32(t, b, rows, table, count, s);
    }
    if (whole < n) {
        float ts[LANES], bs[LANES];
        const float *t = narrow(traw, code, whole, n - whole, table, ts);
        const float *b = narrow(braw, code, whole, n - whole, table, bs);
        pair_rows_f(t, b, 1, s->tt, s->bb, s->tb, s->dd, s->top);
        if (count) s->changed += count_bits(code, traw, braw, whole, n - whole);
    }
}

/* Every sum of one chunk of a pair (n entries each), written to out: tt, bb,
 * tb, dd, max |T|, the non-finite entries of T and B, then one count per
 * option (its kind options[2k], its limit options[2k + 1]). */
ENTRY void figspec_pair(const void *traw_, int tcode, const void *braw_, int bcode, int same,
                        int64_t n_, const double *opts, int64_t options, const double *table,
                        double scale, double *out) {
    const byte *traw = traw_, *braw = braw_;
    size_t n = (size_t)n_;
    struct pair_lanes s = {{0}, {0}, {0}, {0}, {0}, 0};
    double *tt = s.tt, *bb = s.bb, *tb = s.tb, *dd = s.dd, *top = s.top;
    for (int64_t k = 0; k < options; k++) out[7 + k] = 0.0;
    if (fusable(tcode, bcode, scale, opts, options)) {
        pair_fused(traw, braw, tcode, n, options > 0, table, &s);
        for (int64_t k = 0; k < options; k++) out[7 + k] = (double)s.changed;
    } else if (scale == 1.0 && is_float32(tcode) && is_float32(bcode)) { /* as float32 */
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

/* Bytes per entry of each dtype code. */
static const size_t WIDTH[] = {2, 2, 4, 8, 1, 1};

/* figspec_pair of each chunk of n in turn (chunk entries each, the last
 * fewer), each chunk's sums added into acc (the layout of out) as
 * reduce._add adds them: sums and counts by +, max |T - B| kept unless a
 * chunk's is greater. The same bits as a call per chunk, in chunk order,
 * with no Python between chunks: a call per window of the files, not per
 * chunk (45 microseconds of Python each). */
ENTRY void figspec_pair_chunks(const void *traw_, int tcode, const void *braw_, int bcode,
                               int same, int64_t n_, int64_t chunk_, const double *opts,
                               int64_t options, const double *table, double scale,
                               double *acc) {
    const byte *traw = traw_, *braw = braw_;
    size_t n = (size_t)n_, chunk = (size_t)chunk_;
    double out[7 + MAX_OPTIONS];
    if (options > MAX_OPTIONS || chunk == 0) return; /* _kernel_c.py never asks it */
    for (size_t lo = 0; lo < n; lo += chunk) {
        size_t m = n - lo < chunk ? n - lo : chunk;
        figspec_pair(traw + lo * WIDTH[tcode], tcode, braw + lo * WIDTH[bcode], bcode, same,
                     (int64_t)m, opts, options, table, scale, out);
        for (int64_t k = 0; k < 7 + options; k++)
            acc[k] = k == 4 ? (out[k] > acc[k] ? out[k] : acc[k]) : acc[k] + out[k];
    }
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

/* A tensor's running sums, GROUP lanes of them, as struct pair_group. */
struct single_group {
    double tt[GROUP];
    float top[GROUP];
    uint32_t bad[GROUP];
};

/* Lane k of a group adds T's next entry (a float32's bits u), as
 * single_rows does; not finite: its exponent's bits all set (an integer
 * compare: the compiler keeps it in vectors, where !(|x| < inf) it did not). */
INLINE void single_add(struct single_group *restrict q, int k, uint32_t u) {
    float xf = as_float(u), a = fabsf(xf);
    double x = xf;
    q->tt[k] += x * x;
    q->top[k] = a > q->top[k] ? a : q->top[k];
    q->bad[k] += (u & 0x7f800000u) == 0x7f800000u;
}

/* Whole rows of LANES BF16 entries of T (rows <= SPAN / 2 / LANES) into
 * the lanes: tt, max |T|, the entries not finite; the stored bytes read
 * once, the even and odd lanes apart, as pair_fused_bf16 takes them. */
BLOCKWISE void single_fused_bf16(const byte *restrict t, size_t rows, double *restrict tt,
                                 double *restrict top, int64_t *restrict bad) {
    enum { HALF = GROUP / 2 };
    for (int g = 0; g < LANES; g += GROUP) {
        struct single_group q;
        for (int k = 0; k < GROUP; k++) {
            int j = g + EVEN_ODD[k];
            q.tt[k] = tt[j], q.top[k] = (float)top[j], q.bad[k] = 0;
        }
        for (size_t r = 0; r < rows; r++) {
            const byte *tr = t + 2 * (r * LANES + (size_t)g);
            AHEAD(tr, SPAN);
            UNROLLED_NOT /* a loop over the lanes, so that it is vectorised */
            for (int k = 0; k < HALF; k++) {
                uint32_t w = bits32(tr, (size_t)k);
                single_add(&q, k, w << 16);
                single_add(&q, HALF + k, w & 0xffff0000u);
            }
        }
        for (int k = 0; k < GROUP; k++) {
            int j = g + EVEN_ODD[k];
            tt[j] = q.tt[k], top[j] = q.top[k], bad[j] += q.bad[k];
        }
    }
}

/* The sums of one chunk of a tensor alone: out[0] tt, out[4] max |T|,
 * out[5] its non-finite entries; the rest are left as they are (0). */
ENTRY void figspec_single(const void *traw_, int tcode, int64_t n_, const double *table,
                          double scale, double *out) {
    const byte *traw = traw_;
    size_t n = (size_t)n_;
    double tt[LANES] = {0}, top[LANES] = {0};
    int64_t lanes_bad[LANES] = {0}, count = 0;
    if (scale == 1.0 && tcode == BF16) { /* fused: whole rows, then the rest padded */
        size_t whole = n / LANES * LANES, block = SPAN / 2, lo = 0;
        float ts[LANES];
#ifdef AVX2_LOOPS
        if (has_avx2_fma()) single_avx2_bf16(traw, whole / LANES, tt, top, lanes_bad), lo = whole;
#endif
        for (; lo < whole; lo += block)
            single_fused_bf16(traw + 2 * lo, (whole - lo < block ? whole - lo : block) / LANES,
                              tt, top, lanes_bad);
        if (whole < n)
            single_rows_f(narrow(traw, tcode, whole, n - whole, table, ts), 1, tt, top,
                          lanes_bad);
    } else if (scale == 1.0 && is_float32(tcode)) {
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
        size_t lo = 0;
#ifdef AVX2_LOOPS
        if (tcode == BF16 && ocode == BF16 && bcode == BF16 && has_avx2_fma()) {
            lo = n / LANES * LANES; /* whole rows; the rest (padded) as below */
            triple_avx2_bf16(traw, oraw, braw, lo / LANES, uu, vv, uv, ww);
        }
#endif
        for (; lo < n; lo += BLOCK) {
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

/* The float64 value of a minifloat's bits (width bits: sign, exponent_bits,
 * the rest mantissa), exactly (m * 2**k): subnormals where the exponent is
 * 0; an all-ones exponent is infinity or NaN (IEEE-like, F16 and F8_E5M2),
 * or, where fn ("finite": F8_E4M3), only S.1111.111 is NaN. A NaN keeps its
 * sign where signed_nan, as kernel._values() makes them (struct's F16; its
 * FP8 NaNs are math.nan). */
static double minifloat(uint32_t bits, int width, int exponent_bits, int fn, int signed_nan) {
    const int mantissa_bits = width - 1 - exponent_bits;
    const int bias = (1 << (exponent_bits - 1)) - 1, top = (1 << exponent_bits) - 1;
    const uint32_t mask = (1u << mantissa_bits) - 1, m = bits & mask;
    const int e = (int)(bits >> mantissa_bits) & top;
    const double sign = (bits >> (width - 1)) & 1 ? -1.0 : 1.0;
    if (e == top && (!fn || m == mask))
        return m || fn ? (signed_nan ? copysign((double)NAN, sign) : (double)NAN)
                       : sign * (double)INFINITY;
    if (e == 0) return sign * ldexp((double)m, 1 - bias - mantissa_bits);
    return sign * ldexp((double)(m | (mask + 1)), e - bias - mantissa_bits);
}

/* The table the kernel decodes F16 and FP8 by, into out (65,536 + 2 * 256
 * float64s): every F16 bit pattern's value, then every F8_E4M3 byte's, then
 * every F8_E5M2 byte's (kernel.TABLE_AT), the same values as
 * kernel._values(), made here: Python took 8-15 ms of a command's start to
 * make them (66,048 float objects); this takes a fraction of a millisecond. */
void figspec_values(double *out) {
    for (uint32_t v = 0; v < 1u << 16; v++) out[v] = minifloat(v, 16, 5, 0, 1);
    for (uint32_t v = 0; v < 256; v++) out[(1u << 16) + v] = minifloat(v, 8, 4, 1, 0);
    for (uint32_t v = 0; v < 256; v++) out[(1u << 16) + 256 + v] = minifloat(v, 8, 5, 0, 0);
}

/* What this source's entry points are (checked after loading). */
int figspec_kernel_abi(void) { return ABI; }
