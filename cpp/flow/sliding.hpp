// Filippov sliding (flow.hpp): where the fields on both sides of a switching surface push into
// it, the flow moves along it with the field alpha F_upper + (1 - alpha) F_lower, alpha in
// [0, 1] making it tangent. Several surfaces may slide at once (one alpha each: the multilinear
// Filippov field of Dieci and Lopez).
//
// For a gradient field the sliding field is the orthogonal projection of either one-sided field
// onto the surfaces' common tangent space: the one-sided risks agree on a surface, so the fields
// differ by a multiple of its normal there. That is how it is computed, from F_base (every
// sliding unit on the piece below its kink):  F = F_base + sum_s lambda_s n_s, tangent to every
// surface. The alphas follow from the lambdas. Switching surface s from below to above changes
// the field by beta_s n_s, beta_s = -(slope above - slope below) * sum over its units of dL/dh
// (the backward pass before the slope), so alpha_s = lambda_s / beta_s wherever the sliding
// units of each sample lie in one layer (then the field is affine in each slope with no cross
// terms). Where a sample slides in two layers the field is multilinear in their slopes, and
// those alphas are found by Newton's method on the fields with mixed slopes.
//
// Units whose switching functions coincide (duplicate samples; in deeper layers, samples whose
// lower units all sit on flat pieces) are one surface with one alpha.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

#include "flow/field.hpp"

namespace gengrad {
namespace flow {

// A normal velocity below this, relative to |grad z| |F|, is zero: the rounding of the dot
// products in a forward pass with derivatives is about d ulps of it.
constexpr double kTangent = 1e-10;

struct Surface {
    std::vector<int64_t> units;  // equal switching functions; units[0] stands for all
    int kink;
    double hysteresis;  // its band is this many times the integrator's (1 until it chatters)
};

class SlidingSet {
public:
    explicit SlidingSet(NetworkField& field) : field_(field) {}

    bool empty() const { return surfaces_.empty(); }
    size_t size() const { return surfaces_.size(); }
    const Surface& operator[](size_t s) const { return surfaces_[s]; }

    // The units of `surface` start sliding, or end it by taking `piece`.
    void add(Surface surface);
    void remove(size_t s, int piece);
    // Unit u (not units[0]) of surface s no longer coincides with it: it takes `piece`.
    void detach(size_t s, int64_t u, int piece);

    // F is the field with every sliding unit on the piece below its kink; replaces it by its
    // part tangent to every surface at theta and keeps the coefficients for alphas(). False if
    // the surfaces' normals are linearly dependent there.
    bool project(const double* theta, double* F);
    // The Filippov weight of the upper piece of every surface at the point of the last
    // project(), given dL/dh there (g, Units layout). +-inf where no weight in R balances the
    // fields (both push to the same side).
    const std::vector<double>& alphas(const double* theta, const double* g);
    // False when the last alphas() could not solve for the weights of surfaces coupled across
    // layers (the multilinear Filippov system has no solution near the start).
    bool alphas_determined() const { return converged_; }
    // A unit moving off its surface slower than this (|n| times, per unit of time) stays
    // within the local error of it for a step: alphas() counts such a side as tangent.
    void set_drift(double drift) { drift_ = drift; }
    // Moves theta onto every surface (Gauss-Newton on z(theta) = kink); false if it could not.
    bool project_state(double* theta);
    // |z - kink| of surface s at theta, relative to 1 + |kink|.
    double offset(const double* theta, size_t s);

    // n_s . v for the normals of the last project().
    double normal_dot(size_t s, const double* v) const;
    // The normal of the last project() of surface s, and where it is nonzero.
    const double* normal(size_t s) const { return &normals_[s * field_.dim()]; }

private:
    void compute_normals(const double* theta);
    bool factor_gram();
    void solve(std::vector<double>& rhs) const;  // (N N^T) x = rhs in place
    void coupled_alphas(const double* theta);

    NetworkField& field_;
    std::vector<Surface> surfaces_;
    bool coupled_ = false;  // some sample slides in two layers
    bool converged_ = true;
    double base_norm_ = 0;  // |F_base| at the last project()
    std::vector<double> normals_;
    std::vector<std::pair<int64_t, int64_t>> support_;
    std::vector<double> cholesky_, lambda_, alpha_, base_, work_, trial_;
    double drift_ = 0;
};

}  // namespace flow
}  // namespace gengrad
