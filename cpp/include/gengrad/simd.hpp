// The one SIMD abstraction of the kernels: GCC/Clang vector extensions of a fixed logical width
// of 64 bytes (16 floats, 8 doubles). The compiler lowers one logical vector to one zmm register
// (AVX-512), two ymm (AVX2) or four xmm (SSE2), so one source serves every build in
// CMakeLists.txt; the tile shapes below are chosen per build to fit its register file.
#pragma once
#include <cstring>

#include "gengrad/isa_namespace.hpp"

namespace gengrad {
namespace GENGRAD_ISA_NS {

constexpr int kVectorBytes = 64;

// (An alias template cannot carry vector_size on a dependent type, hence the specialisations.)
template <class T>
struct VectorOf;
template <>
struct VectorOf<float> {
    typedef float type __attribute__((vector_size(kVectorBytes)));
};
template <>
struct VectorOf<double> {
    typedef double type __attribute__((vector_size(kVectorBytes)));
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
inline V splat(T x) {
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
inline T map_lanes(T x, F f) {
    return f(x);
}

// Register tiles (see mlp.hpp): GEMM_ROWS x GEMM_VECTORS logical vectors of accumulators for
// the forward/backward products, DOT_ROWS x DOT_COLS for the weight-gradient products.
#if defined(__AVX512F__)
constexpr int kGemmRows = 6, kGemmVectors = 2, kDotRows = 4, kDotCols = 3;
#elif defined(__AVX2__)
constexpr int kGemmRows = 6, kGemmVectors = 1, kDotRows = 2, kDotCols = 2;
#elif defined(__SSE2__)
constexpr int kGemmRows = 3, kGemmVectors = 1, kDotRows = 1, kDotCols = 2;
#else
constexpr int kGemmRows = 4, kGemmVectors = 1, kDotRows = 2, kDotCols = 2;
#endif

}  // namespace GENGRAD_ISA_NS
}  // namespace gengrad
