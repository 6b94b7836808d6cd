// The network as the gradient flow sees it: the risk, the generalized gradient, the hidden
// pre-activations and their derivatives along a direction on the current activation pattern,
// and the gradient of one hidden pre-activation (the normal of its switching surface). All of it
// runs through the kernel table (frozen.hpp for piecewise-linear activations, mlp.hpp's
// generalized gradient for smooth ones), so the flow computes what Network computes.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "flow/pattern.hpp"
#include "gengrad/contract.hpp"

namespace gengrad {
namespace flow {

class NetworkField {
public:
    NetworkField(const NetSpec& spec, const Batch<double>& data);

    int64_t dim() const { return dim_; }
    // Piecewise-linear with kinks and at least one hidden layer: the pattern can switch.
    bool switches() const { return switches_; }
    const NetSpec& spec() const { return spec_; }
    const Batch<double>& data() const { return data_; }
    const Units& units() const { return units_; }
    Pattern& pattern() { return pattern_; }
    const Pattern& pattern() const { return pattern_; }

    // Returns the risk; grad = G on the current pattern. z and g (Units layout, may be null)
    // receive the hidden pre-activations and dL/dh (the backward pass before the slope).
    double gradient(const double* theta, double* grad, double* z = nullptr, double* g = nullptr);
    // The risk alone.
    double risk(const double* theta);
    // The hidden pre-activations into z and, unless direction is null, their derivatives along
    // it into dz (Units layout).
    void hidden(const double* theta, const double* direction, double* z, double* dz);
    // The gradient of z_u(theta) on the current pattern. Only [first, second) of `normal` is
    // written; the entries outside it are zero by definition.
    std::pair<int64_t, int64_t> unit_normal(const double* theta, int64_t u, double* normal);
    // z_u(theta); reads only theta[0, prefix(layer of u)).
    double unit_value(const double* theta, int64_t u);
    // The parameters that the pre-activations of hidden layer k depend on: theta[0, prefix(k)).
    int64_t prefix(int64_t k) const { return prefix_[k]; }
    const double* input(int64_t m) const { return data_.X + m * spec_.widths[0]; }

    // Calls of the kernels, for the result's counters: gradients, forward passes (hidden
    // pre-activations or the risk), forward passes with derivatives, one-sample passes.
    int64_t n_gradient = 0, n_forward = 0, n_tangent = 0, n_unit = 0;

private:
    NetSpec spec_;
    Batch<double> data_;
    int64_t dim_;
    bool switches_;
    Units units_;
    Pattern pattern_;
    std::vector<int64_t> prefix_;
    std::vector<double> scratch_;
};

}  // namespace flow
}  // namespace gengrad
