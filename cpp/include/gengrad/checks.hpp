// Input checks the bindings run before any kernel sees the data.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "gengrad/isa_namespace.hpp"

namespace gengrad {
namespace GENGRAD_ISA_NS {

// Index of the first NaN or infinity in p[0..n), or -1. Tests the exponent bits, so it needs no
// -ffast-math (which would fold isfinite to true): in blocks of 1024 values, a count of the
// values whose upper 32 bits (all of a float's; the sign, exponent and top of a double's) have
// every exponent bit set, in 16-byte vectors (every build has them; SSE2 has no 64-bit compare,
// so a double's lower word is compared with a value its masked form never takes); a block with
// a hit is scanned again for the index. Written as a scalar count, the float64 loop stayed
// scalar at 0.5 ns a value, 4 % of a float64 gradient of (784, 512, 512, 10); `bool |= a == b`
// stayed scalar for both types (1.3 ns a value).
template <class T>
int64_t first_non_finite(const T* p, int64_t n) {
    using Words = uint32_t __attribute__((vector_size(16)));
    using Bits = typename std::conditional<sizeof(T) == 4, uint32_t, uint64_t>::type;
    constexpr uint32_t exponent = sizeof(T) == 4 ? 0x7f800000u : 0x7ff00000u;
    constexpr bool single = sizeof(T) == 4, upper_first = __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__;
    constexpr uint32_t lower_mask = single ? exponent : 0u, lower_target = single ? exponent : ~0u;
    const Words mask = upper_first ? Words{exponent, lower_mask, exponent, lower_mask}
                                   : Words{lower_mask, exponent, lower_mask, exponent};
    const Words target = upper_first ? Words{exponent, lower_target, exponent, lower_target}
                                     : Words{lower_target, exponent, lower_target, exponent};
    constexpr int64_t kPerVector = 16 / int64_t(sizeof(T));
    const auto non_finite = [&](int64_t i) -> bool {
        Bits bits;
        std::memcpy(&bits, p + i, sizeof bits);
        return (uint32_t(bits >> (8 * sizeof(Bits) - 32)) & exponent) == exponent;
    };
    constexpr int64_t kBlock = 1024;
    for (int64_t start = 0; start < n; start += kBlock) {
        const int64_t end = start + kBlock < n ? start + kBlock : n;
        Words hits{};
        int64_t i = start;
        for (; i + kPerVector <= end; i += kPerVector) {
            Words words;
            std::memcpy(&words, p + i, sizeof words);
            hits -= (Words)((words & mask) == target);
        }
        bool any = (hits[0] | hits[1] | hits[2] | hits[3]) != 0;
        for (; i < end; ++i) any = any || non_finite(i);
        if (any)
            for (int64_t j = start; j < end; ++j)
                if (non_finite(j)) return j;
    }
    return -1;
}

}  // namespace GENGRAD_ISA_NS
}  // namespace gengrad
