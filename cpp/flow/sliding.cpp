#include "flow/sliding.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "flow/linear_algebra.hpp"

namespace gengrad {
namespace flow {

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kEps = std::numeric_limits<double>::epsilon();
}  // namespace

void SlidingSet::add(Surface surface) {
    for (int64_t u : surface.units) field_.pattern().set_sliding(u, surface.kink);
    surfaces_.push_back(std::move(surface));
    coupled_ = false;
    std::map<int64_t, int64_t> layer_of_sample;
    const Units& units = field_.units();
    for (const Surface& s : surfaces_)
        for (int64_t u : s.units) {
            const auto it = layer_of_sample.emplace(units.sample(u), units.layer(u)).first;
            if (it->second != units.layer(u)) coupled_ = true;
        }
}

void SlidingSet::remove(size_t s, int piece) {
    for (int64_t u : surfaces_[s].units) field_.pattern().set_piece(u, piece);
    std::vector<Surface> kept;
    for (size_t r = 0; r < surfaces_.size(); ++r)
        if (r != s) kept.push_back(std::move(surfaces_[r]));
    surfaces_.clear();
    for (Surface& surface : kept) add(std::move(surface));
}

void SlidingSet::detach(size_t s, int64_t u, int piece) {
    std::vector<int64_t>& units = surfaces_[s].units;
    units.erase(std::find(units.begin() + 1, units.end(), u));
    field_.pattern().set_piece(u, piece);
}

void SlidingSet::compute_normals(const double* theta) {
    const int64_t d = field_.dim();
    normals_.resize(surfaces_.size() * d);
    support_.resize(surfaces_.size());
    for (size_t s = 0; s < surfaces_.size(); ++s)
        support_[s] = field_.unit_normal(theta, surfaces_[s].units[0], &normals_[s * d]);
}

double SlidingSet::normal_dot(size_t s, const double* v) const {
    const double* n = normal(s);
    double sum = 0;
    for (int64_t i = support_[s].first; i < support_[s].second; ++i) sum += n[i] * v[i];
    return sum;
}

bool SlidingSet::factor_gram() {
    const size_t S = surfaces_.size();
    cholesky_.assign(S * S, 0.0);
    for (size_t s = 0; s < S; ++s)
        for (size_t r = 0; r <= s; ++r) {
            const int64_t first = std::max(support_[s].first, support_[r].first);
            const int64_t last = std::min(support_[s].second, support_[r].second);
            double sum = 0;
            for (int64_t i = first; i < last; ++i) sum += normal(s)[i] * normal(r)[i];
            cholesky_[s * S + r] = sum;
        }
    return cholesky_factor(cholesky_, S);
}

void SlidingSet::solve(std::vector<double>& rhs) const { cholesky_solve(cholesky_, rhs.size(), rhs.data()); }

bool SlidingSet::project(const double* theta, double* F) {
    const int64_t d = field_.dim();
    compute_normals(theta);
    if (!factor_gram()) return false;
    if (coupled_) base_.assign(F, F + d);
    base_norm_ = 0;
    for (int64_t i = 0; i < d; ++i) base_norm_ += F[i] * F[i];
    base_norm_ = std::sqrt(base_norm_);
    std::vector<double>& c = lambda_;
    c.resize(surfaces_.size());
    for (size_t s = 0; s < surfaces_.size(); ++s) c[s] = normal_dot(s, F);
    solve(c);
    for (size_t s = 0; s < surfaces_.size(); ++s) {
        const double* n = normal(s);
        for (int64_t i = support_[s].first; i < support_[s].second; ++i) F[i] -= c[s] * n[i];
        c[s] = -c[s];  // F = F_base + sum_s lambda_s n_s
    }
    return true;
}

const std::vector<double>& SlidingSet::alphas(const double* theta, const double* g) {
    const Pattern& pattern = field_.pattern();
    converged_ = true;
    alpha_.resize(surfaces_.size());
    for (size_t s = 0; s < surfaces_.size(); ++s) {
        const Surface& surface = surfaces_[s];
        double sum_g = 0;
        for (int64_t u : surface.units) sum_g += g[u];
        const double beta = -(pattern.piece_slope(surface.kink + 1) - pattern.piece_slope(surface.kink)) * sum_g;
        const double lambda = lambda_[s];
        // The one-sided normal velocities are about -lambda |n|^2 (below) and (beta - lambda)
        // |n|^2 (above): sliding needs the first >= 0 >= the second. A side that moves the unit
        // off the surface by less than the local error within a step (drift_), or by rounding,
        // counts as tangent: near a stationary point, or where the sample is fitted, both
        // sides' fields vanish together and alpha = lambda / beta is noise over noise. Then
        // the surface stays (alpha clamped into [0, 1]); the surface's hysteresis widens this
        // as it widens the band of alpha.
        double n_norm2 = 0;
        for (int64_t i = support_[s].first; i < support_[s].second; ++i) n_norm2 += normal(s)[i] * normal(s)[i];
        const double tangent =
            surface.hysteresis * std::sqrt(n_norm2) * std::max(kTangent * base_norm_, drift_);
        const double below = -lambda * n_norm2, above = (beta - lambda) * n_norm2;
        if (below >= -tangent && above <= tangent)
            alpha_[s] = beta * n_norm2 < -tangent ? std::min(1.0, std::max(0.0, lambda / beta)) : 0.5;
        else if (below < -tangent)
            alpha_[s] = beta < 0 ? lambda / beta : -kInf;
        else
            alpha_[s] = beta < 0 ? lambda / beta : kInf;
    }
    if (coupled_) coupled_alphas(theta);
    return alpha_;
}

// Newton's method on the alphas of the surfaces with a unit in a sample that slides in two
// layers: D(alpha) = F(alpha) - F_base, the change of the field when their units take the mixed
// slopes, must be sum_r lambda_r n_r; dotted with their normals. D is affine in each alpha, so
// its differences are exact Jacobian columns.
void SlidingSet::coupled_alphas(const double* theta) {
    const Units& units = field_.units();
    std::map<int64_t, std::vector<int64_t>> layers_of_sample;
    for (const Surface& s : surfaces_)
        for (int64_t u : s.units) layers_of_sample[units.sample(u)].push_back(units.layer(u));
    std::vector<size_t> C;
    for (size_t s = 0; s < surfaces_.size(); ++s)
        for (int64_t u : surfaces_[s].units) {
            const std::vector<int64_t>& layers = layers_of_sample[units.sample(u)];
            if (std::count(layers.begin(), layers.end(), layers.front()) != int64_t(layers.size())) {
                C.push_back(s);
                break;
            }
        }
    const size_t n = C.size();
    const int64_t d = field_.dim();
    Pattern& pattern = field_.pattern();
    auto set = [&](const std::vector<double>& a) {
        for (size_t c = 0; c < n; ++c)
            for (int64_t u : surfaces_[C[c]].units) pattern.set_sliding(u, surfaces_[C[c]].kink, a[c]);
    };
    // n_c . D(a) for the current mixed slopes a.
    auto normal_change = [&](std::vector<double>& out) {
        work_.resize(d);
        field_.gradient(theta, work_.data());
        trial_.resize(d);
        for (int64_t i = 0; i < d; ++i) trial_[i] = -work_[i] - base_[i];
        out.resize(n);
        for (size_t c = 0; c < n; ++c) out[c] = normal_dot(C[c], trial_.data());
    };
    std::vector<double> target(n, 0.0), a(n), residual, shifted, jacobian(n * n);
    converged_ = false;
    double scale = 0;
    for (size_t c = 0; c < n; ++c) {
        for (size_t r : C) {  // D lies in the span of the coupled surfaces' normals
            const int64_t first = std::max(support_[C[c]].first, support_[r].first);
            const int64_t last = std::min(support_[C[c]].second, support_[r].second);
            double dot = 0;
            for (int64_t i = first; i < last; ++i) dot += normal(C[c])[i] * normal(r)[i];
            target[c] += dot * lambda_[r];
        }
        scale = std::max(scale, std::fabs(target[c]));
        a[c] = std::isfinite(alpha_[C[c]]) ? alpha_[C[c]] : 0.5;
    }
    for (int iteration = 0; iteration < 12; ++iteration) {
        set(a);
        normal_change(residual);
        double worst = 0;
        for (size_t c = 0; c < n; ++c) {
            residual[c] -= target[c];
            worst = std::max(worst, std::fabs(residual[c]));
        }
        if (worst <= 64 * kEps * (scale + 1e-300) || worst <= 1e-12 * scale) {
            converged_ = true;
            break;
        }
        for (size_t r = 0; r < n; ++r) {
            a[r] += 1;
            set(a);
            normal_change(shifted);
            a[r] -= 1;
            for (size_t c = 0; c < n; ++c) jacobian[c * n + r] = shifted[c] - target[c] - residual[c];
        }
        for (double& v : residual) v = -v;
        // Least squares: the weight of a surface whose one-sided fields agree is undetermined.
        if (!least_squares_step(jacobian, n, residual.data())) break;
        for (size_t c = 0; c < n; ++c) a[c] += residual[c];
        converged_ = false;
    }
    for (size_t c = 0; c < n; ++c) alpha_[C[c]] = a[c];
    for (size_t c = 0; c < n; ++c)
        for (int64_t u : surfaces_[C[c]].units) pattern.set_sliding(u, surfaces_[C[c]].kink);
}

double SlidingSet::offset(const double* theta, size_t s) {
    const double kink = field_.pattern().kink(surfaces_[s].kink);
    return std::fabs(field_.unit_value(theta, surfaces_[s].units[0]) - kink) / (1 + std::fabs(kink));
}

bool SlidingSet::project_state(double* theta) {
    const size_t S = surfaces_.size();
    std::vector<double> offsets(S);
    for (int iteration = 0; S > 0; ++iteration) {
        double worst = 0;
        for (size_t s = 0; s < S; ++s) {
            const double kink = field_.pattern().kink(surfaces_[s].kink);
            offsets[s] = field_.unit_value(theta, surfaces_[s].units[0]) - kink;
            worst = std::max(worst, std::fabs(offsets[s]) / (1 + std::fabs(kink)));
        }
        if (worst <= 4 * kEps) return true;
        if (iteration == 6) return worst <= 1e-12;
        compute_normals(theta);
        if (!factor_gram()) return false;
        solve(offsets);
        for (size_t s = 0; s < S; ++s) {
            const double* n = normal(s);
            for (int64_t i = support_[s].first; i < support_[s].second; ++i) theta[i] -= offsets[s] * n[i];
        }
    }
    return true;
}

}  // namespace flow
}  // namespace gengrad
