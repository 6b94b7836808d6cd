#include "flow/field.hpp"

#include <algorithm>

#include "gengrad/dispatch.hpp"
#include "gengrad/layout.hpp"

namespace gengrad {
namespace flow {

namespace {
const KernelTable<double>& kernels64() { return kernels().f64; }
}  // namespace

NetworkField::NetworkField(const NetSpec& spec, const Batch<double>& data)
    : spec_(spec),
      data_(data),
      dim_(portable::parameter_dim(spec.widths, spec.n_layers)),
      switches_(spec.activation == ActivationKind::piecewise_linear && spec.pwl.n_kinks > 0 && spec.n_layers > 1),
      units_(spec, switches_ ? data.M : 0),
      pattern_(spec.pwl, units_) {
    prefix_.assign(spec.n_layers + 1, 0);
    for (int64_t k = 1; k <= spec.n_layers; ++k) {
        const portable::LayerOffsets lay = portable::layer_offsets(spec.widths, k);
        prefix_[k] = lay.bias + lay.rows;
    }
    if (switches_) scratch_.assign(units_.size(), 0.0);
}

double NetworkField::gradient(const double* theta, double* grad, double* z, double* g) {
    ++n_gradient;
    if (!switches_) return kernels64().risk_gradient(spec_, {Family::exact, 0.0}, theta, data_, grad);
    return kernels64().frozen_risk_gradient(spec_, theta, data_, pattern_.frozen(units_.ld), grad, z, g);
}

double NetworkField::risk(const double* theta) {
    ++n_forward;
    if (!switches_) return kernels64().risk_gradient(spec_, {Family::exact, 0.0}, theta, data_, nullptr);
    return kernels64().frozen_risk_gradient(spec_, theta, data_, pattern_.frozen(units_.ld), nullptr, nullptr, nullptr);
}

void NetworkField::hidden(const double* theta, const double* direction, double* z, double* dz) {
    ++(direction ? n_tangent : n_forward);
    kernels64().frozen_hidden(spec_, theta, direction, data_.X, data_.M, pattern_.frozen(units_.ld), z, dz);
}

std::pair<int64_t, int64_t> NetworkField::unit_normal(const double* theta, int64_t u, double* normal) {
    const int64_t k = units_.layer(u), j = units_.neuron(u), m = units_.sample(u);
    if (k == 1) {  // z = W_1[j] x_m + b_1[j]
        const int64_t l0 = spec_.widths[0];
        const portable::LayerOffsets lay = portable::layer_offsets(spec_.widths, 1);
        const int64_t first = lay.weight + j * l0, last = lay.bias + j + 1;
        std::fill(normal + first, normal + last, 0.0);
        std::copy(input(m), input(m) + l0, normal + first);
        normal[lay.bias + j] = 1;
        return {first, last};
    }
    ++n_unit;
    kernels64().frozen_unit_gradient(spec_, theta, input(m), pattern_.column(m, units_.ld), k, j, normal);
    return {0, prefix_[k]};
}

double NetworkField::unit_value(const double* theta, int64_t u) {
    const int64_t k = units_.layer(u), j = units_.neuron(u), m = units_.sample(u);
    if (k == 1) {
        const int64_t l0 = spec_.widths[0];
        const portable::LayerOffsets lay = portable::layer_offsets(spec_.widths, 1);
        const double* w = theta + lay.weight + j * l0;
        const double* x = input(m);
        double z = w[0] * x[0];  // the kernels' order: the products, then the bias
        for (int64_t c = 1; c < l0; ++c) z += w[c] * x[c];
        return z + theta[lay.bias + j];
    }
    ++n_unit;
    // The network cut after layer k + 1, whose hidden layers are 1..k: the same prefix of theta
    // and rows of the pattern, and no work past the unit's layer.
    NetSpec through_k = spec_;
    through_k.n_layers = k + 1;
    kernels64().frozen_hidden(through_k, theta, nullptr, input(m), 1, pattern_.column(m, units_.ld), scratch_.data(),
                              nullptr);
    return scratch_[units_.row(u) * units_.ld];
}

}  // namespace flow
}  // namespace gengrad
