// The activation pattern along a gradient flow (flow.hpp): for every hidden unit (sample m,
// hidden layer k, neuron j) of a piecewise-linear network, the linear piece it is on or the kink
// it slides along. It is kept in the form the kernels read (contract.hpp, FrozenPattern: the
// affine map of each unit) and as the bounds of each unit's piece, which the event scans
// compare the pre-activations with.
#pragma once
#include <cstdint>
#include <limits>
#include <vector>

#include "gengrad/contract.hpp"

namespace gengrad {
namespace flow {

// Hidden units in the kernels' layout: unit u = row * ld + m, with row = l_1 + ... + l_{k-1} + j
// for neuron j of hidden layer k; only m < M are units.
struct Units {
    int64_t M = 0, ld = 0, rows = 0;
    std::vector<int64_t> layer_of_row;  // k of each row
    std::vector<int64_t> first_row;     // the row of neuron 0 of layer k (k = 1..L-1; [L] = rows)

    Units(const NetSpec& spec, int64_t samples) : M(samples) {
        // ld >= M + 64 (contract.hpp); a multiple of 8 keeps rows 64-byte aligned.
        ld = (M + 64 + 7) / 8 * 8;
        first_row.assign(spec.n_layers + 1, 0);
        for (int64_t k = 1; k < spec.n_layers; ++k) {
            first_row[k + 1] = first_row[k] + spec.widths[k];
            for (int64_t j = 0; j < spec.widths[k]; ++j) layer_of_row.push_back(k);
        }
        rows = int64_t(layer_of_row.size());
    }
    int64_t size() const { return rows * ld; }
    int64_t sample(int64_t u) const { return u % ld; }
    int64_t row(int64_t u) const { return u / ld; }
    int64_t layer(int64_t u) const { return layer_of_row[row(u)]; }
    int64_t neuron(int64_t u) const { return row(u) - first_row[layer(u)]; }
    bool valid(int64_t u) const { return sample(u) < M; }
};

// Pieces are numbered from the left: piece p lies between kink p - 1 and kink p.
class Pattern {
public:
    static constexpr int8_t kSliding = 8;  // mode kSliding + i: sliding along kink i

    Pattern(const PiecewiseLinearParams& p, const Units& units)
        : n_kinks_(p.n_kinks),
          mode_(units.size(), 0),
          slope_(units.size(), 0.0),
          intercept_(units.size(), 0.0),
          lower_(units.size(), -kInf),
          upper_(units.size(), kInf) {
        for (int i = 0; i < n_kinks_; ++i) {
            kink_[i] = p.kink[i];
            right_sided_[i] = p.right_sided[i];
            value_[i] = p.slope[1] * p.kink[i] + p.offset;  // a(kink): the clamp is the kink itself
        }
        for (int i = 0; i <= n_kinks_; ++i) piece_slope_[i] = p.slope[i];
        offset_ = p.offset;
        for (int64_t u = 0; u < units.size(); ++u) set_piece(u, 0);
    }

    int n_kinks() const { return n_kinks_; }
    double kink(int i) const { return kink_[i]; }
    double piece_slope(int p) const { return piece_slope_[p]; }
    int convention_piece(int i) const { return right_sided_[i] ? i + 1 : i; }

    // The piece of a unit whose pre-activation is z; at a kink, the convention's piece.
    int piece_at(double z) const {
        int p = 0;
        for (int i = 0; i < n_kinks_; ++i) {
            if (z == kink_[i]) return convention_piece(i);
            if (z > kink_[i]) p = i + 1;
        }
        return p;
    }

    bool sliding(int64_t u) const { return mode_[u] >= kSliding; }
    int piece(int64_t u) const { return mode_[u]; }             // when not sliding
    int sliding_kink(int64_t u) const { return mode_[u] - kSliding; }  // when sliding

    void set_piece(int64_t u, int p) {
        mode_[u] = int8_t(p);
        slope_[u] = piece_slope_[p];
        const int anchor = p > 0 ? p - 1 : 0;
        intercept_[u] = n_kinks_ == 0 ? offset_ : value_[anchor] - slope_[u] * kink_[anchor];
        lower_[u] = p > 0 ? kink_[p - 1] : -kInf;
        upper_[u] = p < n_kinks_ ? kink_[p] : kInf;
    }

    // Sliding along kink i: the affine map of the piece below it (the sliding field is the
    // tangent part of that field, sliding.hpp), or with `alpha` the Filippov mixture of the
    // two pieces' slopes; the bounds are open, so that crossing scans pass the unit by.
    void set_sliding(int64_t u, int i, double alpha = 0) {
        mode_[u] = int8_t(kSliding + i);
        slope_[u] = (1 - alpha) * piece_slope_[i] + alpha * piece_slope_[i + 1];
        intercept_[u] = value_[i] - slope_[u] * kink_[i];
        lower_[u] = -kInf;
        upper_[u] = kInf;
    }

    // The distance of z into the unit's piece from its lower (upper = false) or upper bound.
    double gap(int64_t u, bool upper, double z) const { return upper ? upper_[u] - z : z - lower_[u]; }
    double lower(int64_t u) const { return lower_[u]; }
    double upper(int64_t u) const { return upper_[u]; }

    FrozenPattern<double> frozen(int64_t ld) const { return {slope_.data(), intercept_.data(), ld}; }
    // The pattern of sample m alone, as column 0 (frozen_unit_gradient).
    FrozenPattern<double> column(int64_t m, int64_t ld) const {
        return {slope_.data() + m, intercept_.data() + m, ld};
    }

private:
    static constexpr double kInf = std::numeric_limits<double>::infinity();
    int n_kinks_;
    double kink_[2] = {0, 0}, value_[2] = {0, 0}, piece_slope_[3] = {0, 0, 0}, offset_ = 0;
    bool right_sided_[2] = {false, false};
    std::vector<int8_t> mode_;
    std::vector<double> slope_, intercept_, lower_, upper_;
};

}  // namespace flow
}  // namespace gengrad
