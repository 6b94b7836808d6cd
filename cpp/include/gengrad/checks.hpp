// Input checks the bindings run before any kernel sees the data.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "gengrad/isa_namespace.hpp"

namespace gengrad {
namespace GENGRAD_ISA_NS {

// Index of the first NaN or infinity in p[0..n), or -1. Tests the exponent bits, so the loop
// vectorises without -ffast-math (which would fold isfinite to true).
template <class T>
int64_t first_non_finite(const T* p, int64_t n) {
    using Bits = typename std::conditional<sizeof(T) == 4, uint32_t, uint64_t>::type;
    constexpr Bits exponent = sizeof(T) == 4 ? Bits(0x7f800000u) : Bits(0x7ff0000000000000ull);
    constexpr int64_t kBlock = 1024;
    for (int64_t start = 0; start < n; start += kBlock) {
        const int64_t end = start + kBlock < n ? start + kBlock : n;
        bool bad = false;
        for (int64_t i = start; i < end; ++i) {
            Bits bits;
            std::memcpy(&bits, p + i, sizeof bits);
            bad |= (bits & exponent) == exponent;
        }
        if (bad)
            for (int64_t i = start; i < end; ++i) {
                Bits bits;
                std::memcpy(&bits, p + i, sizeof bits);
                if ((bits & exponent) == exponent) return i;
            }
    }
    return -1;
}

}  // namespace GENGRAD_ISA_NS
}  // namespace gengrad
