// Input checks the bindings run before any kernel sees the data.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "gengrad/isa_namespace.hpp"

namespace gengrad {
namespace GENGRAD_ISA_NS {

// Index of the first NaN or infinity in p[0..n), or -1. Tests the exponent bits, so the loop
// vectorises without -ffast-math (which would fold isfinite to true): a count of the values
// whose upper 32 bits (all of a float's, the sign, exponent and top of a double's) have every
// exponent bit set. `bool |= (a == b)` stayed scalar (1.3 ns a value), and SSE2 has no 64-bit
// compare; this runs at memory speed.
template <class T>
int64_t first_non_finite(const T* p, int64_t n) {
    using Bits = typename std::conditional<sizeof(T) == 4, uint32_t, uint64_t>::type;
    constexpr uint32_t exponent = sizeof(T) == 4 ? 0x7f800000u : 0x7ff00000u;
    const auto non_finite = [&](int64_t i) -> uint32_t {
        Bits bits;
        std::memcpy(&bits, p + i, sizeof bits);
        return (uint32_t(bits >> (8 * sizeof(Bits) - 32)) & exponent) == exponent;
    };
    constexpr int64_t kBlock = 1024;
    for (int64_t start = 0; start < n; start += kBlock) {
        const int64_t end = start + kBlock < n ? start + kBlock : n;
        uint32_t hits = 0;
        for (int64_t i = start; i < end; ++i) hits += non_finite(i);
        if (hits)
            for (int64_t i = start; i < end; ++i)
                if (non_finite(i)) return i;
    }
    return -1;
}

}  // namespace GENGRAD_ISA_NS
}  // namespace gengrad
