// The flat parameter vector (docs/math.md §1): layer by layer, W_k (l_k x l_{k-1}, row-major, row =
// output neuron) then b_k. The same order as torch.nn.utils.parameters_to_vector of
// nn.Sequential(Linear, act, ..., Linear).
#pragma once
#include <cstdint>

#include "gengrad/host_device.hpp"
#include "gengrad/isa_namespace.hpp"

namespace gengrad {
namespace GENGRAD_ISA_NS {

struct LayerOffsets {
    int64_t rows;    // l_k
    int64_t cols;    // l_{k-1}
    int64_t weight;  // offset of W_k in theta
    int64_t bias;    // offset of b_k in theta
};

// Layer k = 1..L of the network with widths l_0..l_L.
GENGRAD_HD inline LayerOffsets layer_offsets(const int64_t* widths, int64_t k) {
    int64_t offset = 0;
    for (int64_t h = 1; h < k; ++h) offset += widths[h] * (widths[h - 1] + 1);
    return {widths[k], widths[k - 1], offset, offset + widths[k] * widths[k - 1]};
}

GENGRAD_HD inline int64_t parameter_dim(const int64_t* widths, int64_t n_layers) {
    const LayerOffsets last = layer_offsets(widths, n_layers);
    return last.bias + last.rows;
}

}  // namespace GENGRAD_ISA_NS
}  // namespace gengrad
