// The one SIMD abstraction of the kernels: GCC/Clang vector extensions as wide as the registers
// of the build's instruction set (64 bytes for AVX-512, 32 for AVX2, 16 for SSE2), so one
// source serves every build in CMakeLists.txt. (Wider-than-register vectors are lowered
// piecewise by GCC and ran 5-10x slower here.) The tile shapes below fit each register file.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include "gengrad/host_device.hpp"
#include "gengrad/isa_namespace.hpp"

namespace gengrad {
namespace GENGRAD_ISA_NS {


// Register tiles (see mlp.hpp): kGemmRows x kGemmVectors vector accumulators for the
// forward/backward products, kDotRows x kDotCols for the weight-gradient dot products.
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64, kGemmRows = 12, kGemmVectors = 2, kDotRows = 6, kDotCols = 4;
#elif defined(__AVX2__)
constexpr int kVectorBytes = 32, kGemmRows = 6, kGemmVectors = 2, kDotRows = 3, kDotCols = 3;
#else
constexpr int kVectorBytes = 16, kGemmRows = 6, kGemmVectors = 2, kDotRows = 3, kDotCols = 3;
#endif

// (An alias template cannot carry vector_size on a dependent type; a member typedef can.)
template <class Element>
struct VectorOf {
    typedef Element type __attribute__((vector_size(kVectorBytes)));
};
template <class T>
using vec = typename VectorOf<T>::type;

template <class T>
constexpr int lanes = kVectorBytes / static_cast<int>(sizeof(T));

template <class T>
inline vec<T> load(const T* p) {
    vec<T> v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <class T>
inline void store(T* p, vec<T> v) {
    std::memcpy(p, &v, sizeof v);
}

// Broadcasts a scalar into any vector type V (or returns it when V is a scalar type).
template <class V, class T>
GENGRAD_HD inline V splat(T x) {
    return V{} + x;
}

// Horizontal sum in a fixed pairwise order, so results do not depend on how a caller tiled.
template <class T>
inline T hsum(vec<T> v) {
    T buf[lanes<T>];
    std::memcpy(buf, &v, sizeof v);
    for (int width = lanes<T> / 2; width >= 1; width /= 2)
        for (int i = 0; i < width; ++i) buf[i] += buf[i + width];
    return buf[0];
}

// Lane indices for __builtin_shuffle: integers as wide as T, as many as its lanes.
template <class T>
using lane_indices = vec<typename std::conditional<sizeof(T) == 4, int32_t, int64_t>::type>;

// The lanes of two vectors a, b (b's numbered from `lanes`) in blocks of H: for every pair of
// blocks 2H wide, a's first (or, `upper`, second) block, then b's.
template <class T, int H, int... Lane>
constexpr lane_indices<T> interleaved_blocks(std::integer_sequence<int, Lane...>, bool upper) {
    return lane_indices<T>{(Lane / (2 * H) * 2 * H + Lane % (2 * H) % H + (upper ? H : 0) +
                                      (Lane % (2 * H) < H ? 0 : lanes<T>))...};
}

// Transposes the lanes x lanes matrix whose rows are v[0..lanes): log2(lanes) stages, each of
// which swaps the off-diagonal H x H blocks of every 2H x 2H diagonal block (H = lanes/2 .. 1).
// A scalar transpose made each value a load and a store (about 2.5 cycles a value here).
template <class T, int H = lanes<T> / 2>
inline void transpose(vec<T>* v) {
    constexpr auto lower = interleaved_blocks<T, H>(std::make_integer_sequence<int, lanes<T>>{}, false);
    constexpr auto upper = interleaved_blocks<T, H>(std::make_integer_sequence<int, lanes<T>>{}, true);
    for (int i = 0; i < lanes<T>; ++i) {
        if (i & H) continue;
        const vec<T> a = v[i], b = v[i + H];
        v[i] = __builtin_shuffle(a, b, lower);
        v[i + H] = __builtin_shuffle(a, b, upper);
    }
    if constexpr (H > 1) transpose<T, H / 2>(v);
}

// Applies a scalar function lane by lane: for transcendental functions, which the vector
// extensions do not provide.
template <class T, class F>
inline vec<T> map_lanes(vec<T> v, F f) {
    T buf[lanes<T>];
    std::memcpy(buf, &v, sizeof v);
    for (int i = 0; i < lanes<T>; ++i) buf[i] = f(buf[i]);
    std::memcpy(&v, buf, sizeof v);
    return v;
}

template <class T, class F>
GENGRAD_HD inline T map_lanes(T x, F f) {
    return f(x);
}

}  // namespace GENGRAD_ISA_NS
}  // namespace gengrad
