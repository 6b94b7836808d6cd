// The register-tiled products of the kernels (mlp.hpp, frozen.hpp), vectors along the columns
// of the right operand (samples): C = A B with A in place or packed into panels and B in place
// or packed per chunk (gemm_*), and dot tiles that sum over samples (dot_*). Each output element
// is accumulated in one fixed order whatever the tiling, so results never depend on it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "gengrad/simd.hpp"

namespace gengrad {
namespace GENGRAD_ISA_NS {

// Own helpers instead of <algorithm>: a standard-library template instantiated here could be
// merged by the linker with a copy compiled for another instruction set (isa_namespace.hpp).
inline int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }
inline int64_t min_of(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max_of(int64_t a, int64_t b) { return a > b ? a : b; }
template <class T>
inline void fill(T* p, int64_t n, T value) {
    for (int64_t i = 0; i < n; ++i) p[i] = value;
}

// C(i0 + r, c..c+NV*lanes) = sum_p a[r*a_row + p*a_col] * B(p, c..) for r < R, handed to epi;
// Bc points at B(0, c), row p at Bc + p*ldb. The accumulators start from the first product rather
// than from zero: zero-initialising the array made GCC emit a `rep stos` per tile, 14 % of the
// forward pass of narrow nets.
// The strides are std::ptrdiff_t or, for packed panels, compile-time constants: runtime strides
// cost an index register per row, and 12 rows spilled them.
template <class T, int R, int NV, class RowStride, class ColStride, class Epilogue>
inline void gemm_tile(const T* a, RowStride a_row, ColStride a_col, int64_t i0,
                      const T* Bc, std::ptrdiff_t ldb, int64_t c, int64_t K, const Epilogue& epi) {
    vec<T> acc[R][NV];
    for (int v = 0; v < NV; ++v) {
        const vec<T> b = load(Bc + v * lanes<T>);
        for (int r = 0; r < R; ++r) acc[r][v] = a[r * a_row] * b;
    }
    for (int64_t p = 1; p < K; ++p) {
        vec<T> b[NV];
        for (int v = 0; v < NV; ++v) b[v] = load(Bc + p * ldb + v * lanes<T>);
        for (int r = 0; r < R; ++r) {
            const T a_rp = a[r * a_row + p * a_col];
            for (int v = 0; v < NV; ++v) acc[r][v] += a_rp * b[v];
        }
    }
    for (int r = 0; r < R; ++r)
        for (int v = 0; v < NV; ++v) epi(i0 + r, c + v * lanes<T>, acc[r][v]);
}

// The left operand of C = A B with `rows` rows and depth K: A(i, p) = A[i*row + p*col], or, where
// `panels` is set, the copy made by pack_panel: each tile's rows i0..i0+h-1 (h = min(kGemmRows,
// rows - i0)) at panels + i0*K, p-major. A tile then reads one contiguous stream instead of h
// rows (forward: rows of W, 3 KiB apart for 784 inputs), which took a 512 x 784 x 64 product from
// ~110 to ~185 GFLOP/s on one AVX-512 core. Same products in the same order: bitwise the same.
template <class T>
struct Left {
    const T* A;
    std::ptrdiff_t row, col;
    int64_t rows, K;
    const T* panels;
    int64_t packed_depth = 0, p0 = 0;  // a slice (columns): the panels' depth, the first column
    // Calls run(a, a_row, a_col) for the R rows from row i0: where they start and their strides.
    // Whole: a whole packed tile (R = kGemmRows), with compile-time strides. Otherwise (at most
    // kTailRows rows: unpacked, or within a layer's last packed tile) runtime strides, one
    // instantiation per height; 12-row tiles of every kind doubled the kernels' compile time.
    template <int R, bool Whole, class Run>
    void tile(int64_t i0, const Run& run) const {
        const int64_t depth = packed_depth ? packed_depth : K;
        if constexpr (Whole) {
            run(panels + i0 * depth + p0 * R, std::integral_constant<std::ptrdiff_t, 1>{},
                std::integral_constant<std::ptrdiff_t, R>{});
        } else {
            if (!panels) return run(A + i0 * row + p0 * col, row, col);
            const int64_t first = i0 / kGemmRows * kGemmRows;  // the panel holding row i0
            const std::ptrdiff_t height = min_of(kGemmRows, rows - first);
            run(panels + first * depth + p0 * height + (i0 - first), std::ptrdiff_t(1), height);
        }
    }
    // The columns p0 + first .. p0 + first + count - 1 as an operand of depth count.
    Left columns(int64_t first, int64_t count) const {
        Left slice = *this;
        slice.packed_depth = packed_depth ? packed_depth : K;
        slice.p0 += first;
        slice.K = count;
        return slice;
    }
};

// out[p*out_row + r] = A[r*row + p*col] for p < K, r < h: rows r < valid of A, zeros below them
// (out_row: h, a packed panel, unless given). Value by value a transpose costs a load and a
// store each (8 % of the weight gradient's time for its input panels, 3 % of a wide gradient's
// for the 12-row weight and delta panels), so transposes (col 1) go by lanes x lanes blocks in
// registers (`transpose`), all but the last K % lanes columns:
// - h a multiple of lanes (the weight gradient's input panels, 2 lanes; the inputs of a chunk,
//   load_inputs; a panel whose height happens to be one, as AVX-512 float64's last 8 rows):
//   each block of rows walks all K columns, so the rows are read as lanes sequential streams.
//   The inputs in strips of 16 columns, a cache line of each of 64 rows at a time, waited on
//   memory for 7 % of a wide gradient's time (3.5 ns a value).
// - otherwise, into a packed panel (12-row weight and delta panels): column by column, each
//   column's last rows stored as a whole vector whose extra lanes fall on the next columns,
//   which are stored after them. Stores of exactly the rows (masked) were slower than value by
//   value; only the columns whose vector would pass the end of the call's columns get a memcpy
//   of exactly their rows, since pack_deltas fills the columns of one panel from several threads.
template <class T>
void pack_rows(const T* A, std::ptrdiff_t row, std::ptrdiff_t col, int64_t h, int64_t valid, int64_t K, T* out,
               std::ptrdiff_t out_row = 0) {
    constexpr int64_t N = lanes<T>;
    if (out_row == 0) out_row = h;
    valid = min_of(valid, h);
    const auto transposed = [&](int64_t r0, int64_t p0, vec<T>* block) {  // block[i]: column p0 + i, rows r0..
        for (int64_t i = 0; i < N; ++i) block[i] = r0 + i < valid ? load(A + (r0 + i) * row + p0) : vec<T>{};
        transpose<T>(block);
    };
    // the first column left to the scalar loop: the last K % N of a transpose, else all
    const int64_t p_begin = col == 1 && (h % N == 0 || out_row == h) ? K / N * N : 0;
    if (col == 1 && h % N == 0) {
        for (int64_t r0 = 0; r0 < h; r0 += N)
            for (int64_t p0 = 0; p0 + N <= K; p0 += N) {
                vec<T> block[N];
                transposed(r0, p0, block);
                for (int64_t i = 0; i < N; ++i) store(out + (p0 + i) * out_row + r0, block[i]);
            }
    } else if (col == 1 && out_row == h) {
        const int64_t last = h / N * N;  // the first row of the last, partial block of rows
        for (int64_t p0 = 0; p0 + N <= K; p0 += N) {
            vec<T> block[N];
            transposed(last, p0, block);
            for (int64_t i = 0; i < N; ++i) {
                T* rows = out + (p0 + i) * h + last;
                if ((p0 + i) * h + last + N <= K * h) store(rows, block[i]);
                else std::memcpy(rows, &block[i], sizeof(T) * (h - last));
            }
            for (int64_t r0 = 0; r0 < last; r0 += N) {
                transposed(r0, p0, block);
                for (int64_t i = 0; i < N; ++i) store(out + (p0 + i) * h + r0, block[i]);
            }
        }
    }
    for (int64_t p = p_begin; p < K; ++p)
        for (int64_t r = 0; r < h; ++r) out[p * out_row + r] = r < valid ? A[r * row + p * col] : T(0);
}

// The columns [p_begin, p_end) (default: all) of the panel of the row tile starting at i0 (a
// multiple of kGemmRows) into `panels` (rows x K).
template <class T>
void pack_panel(const Left<T>& left, int64_t i0, T* panels, int64_t p_begin = 0, int64_t p_end = -1) {
    const int64_t h = min_of(kGemmRows, left.rows - i0);
    if (p_end < 0) p_end = left.K;
    pack_rows(left.A + i0 * left.row + p_begin * left.col, left.row, left.col, h, h, p_end - p_begin,
              panels + i0 * left.K + p_begin * h);
}

template <class T>
constexpr int64_t gemm_step = kGemmVectors * lanes<T>;

// Where the tiles read B: in place (B(0, c) = B + c, leading dimension ldb) or from a packed
// copy in which the gemm_step columns from c lie contiguously, row after row.
template <class T>
struct Panels {
    const T* B;
    std::ptrdiff_t ldb;
    int64_t c_begin, K;
    bool packed;
    const T* at(int64_t c) const { return packed ? B + (c - c_begin) * K : B + c; }
    std::ptrdiff_t stride() const { return packed ? gemm_step<T> : ldb; }
};

// Rows i0..i0+rows-1 (rows <= R) of C in tiles of exactly that height, so that the last rows
// of a layer keep several independent accumulator chains instead of one latency-bound chain.
// Unpacked operands and the last rows of packed ones go in tiles of at most kTailRows rows.
constexpr int kTailRows = kGemmRows < 6 ? kGemmRows : 6;
template <class T, int R, class Epilogue>
inline void gemm_rows(int64_t rows, const Left<T>& left, int64_t i0, const Panels<T>& B, int64_t c_begin,
                      int64_t c_end, const Epilogue& epi) {
    if constexpr (R > 0) {
        if (rows != R) return gemm_rows<T, R - 1>(rows, left, i0, B, c_begin, c_end, epi);
        left.template tile<R, false>(i0, [&](const T* a, auto a_row, auto a_col) {
            for (int64_t c = c_begin; c < c_end; c += gemm_step<T>)
                gemm_tile<T, R, kGemmVectors>(a, a_row, a_col, i0, B.at(c), B.stride(), c, left.K, epi);
        });
    }
}

// Packing pays when a panel is read by several row tiles and is deep: then the tiles stream
// contiguous memory instead of one cache line per row of B, 4 KiB apart (no prefetch across
// pages). Below these sizes the copy costs more than it saves.
constexpr int64_t kPackMinRows = 16, kPackMinDepth = 64;
constexpr bool packs(int64_t rows, int64_t K) { return rows >= kPackMinRows && K >= kPackMinDepth; }

// All rows of C = A B for the columns [c_begin, c_end) (multiples of gemm_step) of B.
template <class T, class Epilogue>
inline void gemm_panels(const Left<T>& left, const Panels<T>& B, int64_t c_begin, int64_t c_end, const Epilogue& epi) {
    int64_t i = 0;
    for (; left.panels && i + kGemmRows <= left.rows; i += kGemmRows) {
        left.template tile<kGemmRows, true>(i, [&](const T* a, auto a_row, auto a_col) {
            for (int64_t c = c_begin; c < c_end; c += gemm_step<T>)
                gemm_tile<T, kGemmRows, kGemmVectors>(a, a_row, a_col, i, B.at(c), B.stride(), c, left.K, epi);
        });
    }
    for (; i < left.rows; i += kTailRows)
        gemm_rows<T, kTailRows>(min_of(kTailRows, left.rows - i), left, i, B, c_begin, c_end, epi);
}

// gemm_panels with B in place, or first copied into `pack` (scratch for K x (c_end - c_begin)
// values) where that pays; pack may be null.
template <class T, class Epilogue>
inline void gemm_columns(const Left<T>& left, const T* B, std::ptrdiff_t ldb, int64_t c_begin, int64_t c_end,
                         const Epilogue& epi, T* pack) {
    const int64_t K = left.K;
    Panels<T> panels{B, ldb, c_begin, K, pack && packs(left.rows, K)};
    if (panels.packed) {
        for (int64_t c = c_begin; c < c_end; c += gemm_step<T>) {
            T* panel = pack + (c - c_begin) * K;
            for (int64_t p = 0; p < K; ++p)
                std::memcpy(panel + p * gemm_step<T>, B + p * ldb + c, sizeof(T) * gemm_step<T>);
        }
        panels.B = pack;
    }
    gemm_panels(left, panels, c_begin, c_end, epi);
}

// C(i, j) += sum over the n (a positive multiple of lanes) samples of D(i, .) H(j, .).
template <class T, int RI, int RJ>
inline void dot_tile(const T* D, const T* H, std::ptrdiff_t ld, int64_t n, int64_t i0, int64_t j0,
                     T* C, std::ptrdiff_t ldc) {
    vec<T> acc[RI][RJ];
    const auto step = [&](int64_t m, auto first) {
        vec<T> d[RI];
        for (int ri = 0; ri < RI; ++ri) d[ri] = load(D + (i0 + ri) * ld + m);
        for (int rj = 0; rj < RJ; ++rj) {
            const vec<T> h = load(H + (j0 + rj) * ld + m);
            for (int ri = 0; ri < RI; ++ri) {
                if constexpr (decltype(first)::value) acc[ri][rj] = d[ri] * h;
                else acc[ri][rj] += d[ri] * h;
            }
        }
    };
    step(0, std::true_type{});
    for (int64_t m = lanes<T>; m < n; m += lanes<T>) step(m, std::false_type{});
    for (int ri = 0; ri < RI; ++ri)
        for (int rj = 0; rj < RJ; ++rj) C[(i0 + ri) * ldc + j0 + rj] += hsum<T>(acc[ri][rj]);
}

template <class T, int RI>
inline void dot_rows(const T* D, const T* H, std::ptrdiff_t ld, int64_t n, int64_t i0,
                     int64_t cols, T* C, std::ptrdiff_t ldc) {
    int64_t j = 0;
    for (; j + kDotCols <= cols; j += kDotCols) dot_tile<T, RI, kDotCols>(D, H, ld, n, i0, j, C, ldc);
    for (; j < cols; ++j) dot_tile<T, RI, 1>(D, H, ld, n, i0, j, C, ldc);
}

// dot_rows for the last `rows` (<= R) rows of a layer in one tile of exactly that height.
template <class T, int R>
inline void dot_tail(int64_t rows, const T* D, const T* H, std::ptrdiff_t ld, int64_t n, int64_t i0, int64_t cols,
                     T* C, std::ptrdiff_t ldc) {
    if constexpr (R > 0) {
        if (rows != R) return dot_tail<T, R - 1>(rows, D, H, ld, n, i0, cols, C, ldc);
        dot_rows<T, R>(D, H, ld, n, i0, cols, C, ldc);
    }
}

}  // namespace GENGRAD_ISA_NS
}  // namespace gengrad
