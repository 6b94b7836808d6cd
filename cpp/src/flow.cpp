// The event-aware gradient-flow integrator (flow.hpp describes the method).
#include "gengrad/flow.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "gengrad/activation.hpp"
#include "gengrad/dop853.hpp"
#include "gengrad/layout.hpp"
#include "gengrad/loss.hpp"

namespace gengrad {
namespace flow {
namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kInf = std::numeric_limits<double>::infinity();

double dot(const double* a, const double* b, int64_t n) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
    return sum;
}

// Solves the n x n system A x = b (row-major A, overwritten) in place of b by Gaussian
// elimination with partial pivoting; false when A is numerically singular.
bool solve(int64_t n, std::vector<double>& A, std::vector<double>& b) {
    double largest = 0;
    for (double a : A) largest = std::max(largest, std::fabs(a));
    if (!(largest > 0)) return false;
    for (int64_t c = 0; c < n; ++c) {
        int64_t pivot = c;
        for (int64_t r = c + 1; r < n; ++r)
            if (std::fabs(A[r * n + c]) > std::fabs(A[pivot * n + c])) pivot = r;
        if (std::fabs(A[pivot * n + c]) <= 1e-13 * largest) return false;
        if (pivot != c) {
            for (int64_t k = 0; k < n; ++k) std::swap(A[c * n + k], A[pivot * n + k]);
            std::swap(b[c], b[pivot]);
        }
        for (int64_t r = c + 1; r < n; ++r) {
            const double factor = A[r * n + c] / A[c * n + c];
            for (int64_t k = c; k < n; ++k) A[r * n + k] -= factor * A[c * n + k];
            b[r] -= factor * b[c];
        }
    }
    for (int64_t c = n - 1; c >= 0; --c) {
        double sum = b[c];
        for (int64_t k = c + 1; k < n; ++k) sum -= A[c * n + k] * b[k];
        b[c] = sum / A[c * n + c];
    }
    return true;
}

// The Illinois variant of regula falsi on a bracket with phi(a) > 0 >= phi(b). Returns the final
// right end, where phi <= 0: for an event, the first representable state past the surface.
// Falls back to bisection when an iteration does not shrink the bracket enough.
template <class Phi>
double illinois(Phi&& phi, double a, double fa, double b, double fb, double xtol) {
    int side = 0;
    for (int iteration = 0; iteration < 400 && b - a > xtol && fb != 0; ++iteration) {
        double c = (a * fb - b * fa) / (fb - fa);
        const double width = b - a;
        if (!(c > a && c < b) || iteration % 4 == 3) c = a + width / 2;
        const double fc = phi(c);
        if (fc > 0) {
            a = c;
            fa = fc;
            if (side == 1) fb /= 2;
            side = 1;
        } else {
            b = c;
            fb = fc;
            if (side == -1) fa /= 2;
            side = -1;
        }
    }
    return b;
}

// ---- The network with a fixed activation pattern ---------------------------------------------

// Evaluates the risk, G, pre-activations and gradients of single pre-activations of the network
// whose hidden unit u = m * per_sample + offset[k] + j (sample m, layer k, neuron j) has the
// affine activation h = slope[u] z + intercept[u] (piecewise-linear activations: the linear
// piece the unit is on, continued past its kinks) or, for a smooth activation (slope == null),
// the activation itself. Plain loops over samples: the nets of a flow are small, and one pass
// per sample keeps its activations in registers and L1.
class Evaluator {
public:
    Evaluator(const NetSpec& spec, const Batch<double>& data) : spec_(spec), data_(data), L_(spec.n_layers) {
        offset_.assign(L_ + 1, 0);
        int64_t widest = 1;
        for (int64_t k = 1; k <= L_; ++k) {
            layers_.push_back(portable::layer_offsets(spec.widths, k));
            widest = std::max(widest, spec.widths[k - 1]);
            widest = std::max(widest, spec.widths[k]);
            if (k < L_) offset_[k + 1] = offset_[k] + spec.widths[k];
        }
        per_sample_ = offset_[L_];
        for (int64_t k = 1; k < L_; ++k)
            for (int64_t j = 0; j < spec.widths[k]; ++j) layer_of_.push_back(k);
        dim_ = portable::parameter_dim(spec.widths, L_);
        z_.assign(per_sample_ + spec.widths[L_], 0.0);
        h_.assign(std::max<int64_t>(per_sample_, 1), 0.0);
        delta_.assign(widest, 0.0);
        next_.assign(widest, 0.0);
        switch (spec.activation) {
            case ActivationKind::tanh: set_smooth<portable::TanhF<double>>(tanh_slope); break;
            case ActivationKind::sigmoid: set_smooth<portable::SigmoidF<double>>(sigmoid_slope); break;
            case ActivationKind::softplus: set_smooth<portable::SoftplusF<double>>(softplus_slope); break;
            case ActivationKind::gelu: set_smooth<portable::GeluF<double>>(); break;
            case ActivationKind::silu: set_smooth<portable::SiluF<double>>(); break;
            case ActivationKind::piecewise_linear: break;
        }
    }

    int64_t dim() const { return dim_; }
    int64_t per_sample() const { return per_sample_; }
    int64_t units() const { return per_sample_ * data_.M; }
    int64_t samples() const { return data_.M; }
    bool smooth() const { return value_ != nullptr; }
    int64_t hidden_layers() const { return L_ - 1; }

    // (sample, layer, neuron) of unit u.
    void locate(int64_t u, int64_t& m, int64_t& k, int64_t& j) const {
        m = u / per_sample_;
        const int64_t r = u % per_sample_;
        k = layer_of_[r];
        j = r - offset_[k];
    }

    // Returns the risk; writes G into grad and, if Z is set, the hidden pre-activations (M x
    // per_sample) into Z.
    double gradient(const double* theta, const double* slope, const double* intercept, double* grad, double* Z) {
        std::fill(grad, grad + dim_, 0.0);
        double risk = 0;
        for (int64_t m = 0; m < data_.M; ++m) {
            forward_sample(theta, slope, intercept, m, L_);
            if (Z) std::copy(z_.begin(), z_.begin() + per_sample_, Z + m * per_sample_);
            risk += start_backward(m);
            backward_sample(theta, slope, m, L_, grad);
        }
        return risk;
    }

    double risk(const double* theta, const double* slope, const double* intercept) {
        double risk = 0;
        for (int64_t m = 0; m < data_.M; ++m) {
            forward_sample(theta, slope, intercept, m, L_);
            risk += weight(m) * loss(m, false);
        }
        return risk;
    }

    void hidden(const double* theta, const double* slope, const double* intercept, double* Z) {
        for (int64_t m = 0; m < data_.M; ++m) {
            forward_sample(theta, slope, intercept, m, L_ - 1);
            std::copy(z_.begin(), z_.begin() + per_sample_, Z + m * per_sample_);
        }
    }

    double unit_value(const double* theta, const double* slope, const double* intercept, int64_t u) {
        int64_t m, k, j;
        locate(u, m, k, j);
        forward_sample(theta, slope, intercept, m, k);
        return z_[offset_[k] + j];
    }

    // grad = the gradient of z_u(theta) on the current pattern.
    void unit_gradient(const double* theta, const double* slope, const double* intercept, int64_t u, double* grad) {
        int64_t m, k, j;
        locate(u, m, k, j);
        std::fill(grad, grad + dim_, 0.0);
        forward_sample(theta, slope, intercept, m, k - 1);
        std::fill(delta_.begin(), delta_.begin() + spec_.widths[k], 0.0);
        delta_[j] = 1;
        backward_sample(theta, slope, m, k, grad);
    }

    // grad = the gradient of w_m loss(z^L(x_m), y_m): sample m's share of G.
    void sample_gradient(const double* theta, const double* slope, const double* intercept, int64_t m, double* grad) {
        std::fill(grad, grad + dim_, 0.0);
        forward_sample(theta, slope, intercept, m, L_);
        start_backward(m);
        backward_sample(theta, slope, m, L_, grad);
    }

private:
    // The transcendental functions of a smooth activation dominate the cost of its field; where
    // the derivative follows from the value (tanh' = 1 - tanh^2, ...) the backward pass takes it
    // from there instead of evaluating a second one.
    static double tanh_slope(double, double h) { return 1 - h * h; }
    static double sigmoid_slope(double, double h) { return h * (1 - h); }
    static double softplus_slope(double, double h) { return -std::expm1(-h); }  // = sigmoid(z)
    template <class F>
    static double derivative_at(double z, double) { return F::derivative(z); }

    double weight(int64_t m) const { return data_.weight ? data_.weight[m] : 1.0 / double(data_.M); }

    template <class F>
    void set_smooth(double (*slope_of)(double, double) = &derivative_at<F>) {
        value_ = &F::value;
        slope_of_ = slope_of;
    }

    // z^1..z^{k_end} of sample m into z_, and the activations of the hidden layers among them.
    void forward_sample(const double* theta, const double* slope, const double* intercept, int64_t m, int64_t k_end) {
        const double* a = data_.X + m * spec_.widths[0];
        for (int64_t k = 1; k <= k_end; ++k) {
            const portable::LayerOffsets& lay = layers_[k - 1];
            const double* W = theta + lay.weight;
            const double* b = theta + lay.bias;
            double* z = z_.data() + offset_[k];
            for (int64_t i = 0; i < lay.rows; ++i) {
                const double* w = W + i * lay.cols;
                double sum = b[i];
                for (int64_t c = 0; c < lay.cols; ++c) sum += w[c] * a[c];
                z[i] = sum;
            }
            if (k == L_) break;
            double* h = h_.data() + offset_[k];
            if (slope) {
                const int64_t u0 = m * per_sample_ + offset_[k];
                for (int64_t i = 0; i < lay.rows; ++i) h[i] = slope[u0 + i] * z[i] + intercept[u0 + i];
            } else {
                for (int64_t i = 0; i < lay.rows; ++i) h[i] = value_(z[i]);
            }
            a = h;
        }
    }

    // loss(z^L, y_m) from the outputs in z_; `delta`: they become w_m dloss/dz^L. (The kernels'
    // block of samples, here one column with its outputs contiguous.)
    double loss(int64_t m, bool delta) {
        const int64_t outputs = spec_.widths[L_];
        const double w = weight(m);
        double value = 0;
        portable::block_losses(spec_.loss, z_.data() + per_sample_, 1, outputs, data_.Y + m * outputs, &w, w, 0, 1,
                               &value, delta);
        return value;
    }

    // delta_ = w_m dloss/dz^L from the outputs in z_; returns w_m loss.
    double start_backward(int64_t m) {
        const double value = weight(m) * loss(m, true);
        std::copy(z_.begin() + per_sample_, z_.end(), delta_.begin());
        return value;
    }

    // Adds to grad the gradient of sum_i delta_[i] z^{k_top}_i for sample m; needs the forward
    // pass of sample m through layer k_top - 1.
    void backward_sample(const double* theta, const double* slope, int64_t m, int64_t k_top, double* grad) {
        for (int64_t k = k_top; k >= 1; --k) {
            const portable::LayerOffsets& lay = layers_[k - 1];
            const double* a = k == 1 ? data_.X + m * spec_.widths[0] : h_.data() + offset_[k - 1];
            const double* W = theta + lay.weight;
            double* gW = grad + lay.weight;
            double* gb = grad + lay.bias;
            for (int64_t i = 0; i < lay.rows; ++i) {
                const double d = delta_[i];
                if (d == 0) continue;
                gb[i] += d;
                double* g = gW + i * lay.cols;
                for (int64_t c = 0; c < lay.cols; ++c) g[c] += d * a[c];
            }
            if (k == 1) break;
            std::fill(next_.begin(), next_.begin() + lay.cols, 0.0);
            for (int64_t i = 0; i < lay.rows; ++i) {
                const double d = delta_[i];
                if (d == 0) continue;
                const double* w = W + i * lay.cols;
                for (int64_t c = 0; c < lay.cols; ++c) next_[c] += d * w[c];
            }
            if (slope) {
                const double* s = slope + m * per_sample_ + offset_[k - 1];
                for (int64_t c = 0; c < lay.cols; ++c) next_[c] *= s[c];
            } else {
                const double* z = z_.data() + offset_[k - 1];
                const double* h = h_.data() + offset_[k - 1];
                for (int64_t c = 0; c < lay.cols; ++c) next_[c] *= slope_of_(z[c], h[c]);
            }
            std::swap(delta_, next_);
        }
    }

    const NetSpec& spec_;
    Batch<double> data_;
    int64_t L_, dim_ = 0, per_sample_ = 0;
    std::vector<portable::LayerOffsets> layers_;
    std::vector<int64_t> offset_, layer_of_;
    std::vector<double> z_, h_, delta_, next_;
    double (*value_)(double) = nullptr;
    double (*slope_of_)(double z, double h) = nullptr;  // a'(z), given h = a(z)
};

// The linear piece of every hidden unit of a piecewise-linear activation, as the affine map
// (slope, intercept) the Evaluator applies. Pieces are numbered from the left: piece p lies
// between kink p - 1 and kink p.
class Pattern {
public:
    Pattern(const PiecewiseLinearParams& p, int64_t n_units)
        : n_kinks_(p.n_kinks), piece(n_units, 0), slope(n_units, 0.0), intercept(n_units, 0.0) {
        for (int i = 0; i < n_kinks_; ++i) {
            kink_[i] = p.kink[i];
            right_sided_[i] = p.right_sided[i];
            value_[i] = p.slope[1] * p.kink[i] + p.offset;  // a(kink): the clamp is the kink itself
        }
        for (int i = 0; i <= n_kinks_; ++i) slope_[i] = p.slope[i];
        offset_ = p.offset;
        for (int64_t u = 0; u < n_units; ++u) set_piece(u, 0);
    }

    int n_kinks() const { return n_kinks_; }
    double kink(int i) const { return kink_[i]; }
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

    void set_piece(int64_t u, int p) {
        piece[u] = int8_t(p);
        slope[u] = slope_[p];
        if (n_kinks_ == 0) {
            intercept[u] = offset_;
        } else {
            const int anchor = p > 0 ? p - 1 : 0;
            intercept[u] = value_[anchor] - slope_[p] * kink_[anchor];
        }
    }

    // Sliding on kink i: the slope alpha * slope(i + 1) + (1 - alpha) * slope(i), through the kink.
    void set_mix(int64_t u, int i, double alpha) {
        piece[u] = int8_t(i);
        slope[u] = alpha * slope_[i + 1] + (1 - alpha) * slope_[i];
        intercept[u] = value_[i] - slope[u] * kink_[i];
    }

private:
    int n_kinks_;
    double kink_[2] = {0, 0}, value_[2] = {0, 0}, slope_[3] = {0, 0, 0}, offset_ = 0;
    bool right_sided_[2] = {false, false};

public:
    std::vector<int8_t> piece;
    std::vector<double> slope, intercept;
};

// Units whose switching functions coincide, on the kink they slide along.
struct Surface {
    std::vector<int64_t> units;
    int kink;
    double alpha;  // weight of the upper piece in the Filippov combination
};

// A unit reaching a boundary of its piece: `upper` says whether it is the kink above it.
struct Hit {
    int64_t unit;
    bool upper;
};

class Integrator {
public:
    Integrator(const NetSpec& spec, const double* theta0, const Batch<double>& data, const Options& options,
               const std::function<bool()>& interrupted)
        : options_(options),
          interrupted_(interrupted),
          ev_(spec, data),
          d_(ev_.dim()),
          n_units_(spec.activation == ActivationKind::piecewise_linear ? ev_.units() : 0),
          pattern_(spec.pwl, n_units_),
          events_possible_(!ev_.smooth() && spec.pwl.n_kinks > 0 && n_units_ > 0),
          surface_of_(n_units_, -1),
          theta_(theta0, theta0 + d_),
          f_(d_), grad_(d_), y_new_(d_), work_(d_), point_(d_), scratch_(d_), sample_work_(d_),
          K_(dop853::kExtendedStages * d_),
          coefficients_(dop853::kDenseRows * d_),
          Z_start_(n_units_), Z_end_(n_units_), Z_node_(n_units_), Z_before_(n_units_) {
        result_.dim = d_;
    }

private:
    const double* slope() const { return ev_.smooth() ? nullptr : pattern_.slope.data(); }
    const double* intercept() const { return ev_.smooth() ? nullptr : pattern_.intercept.data(); }

    // F = -G on the current pattern (the Filippov sliding field when surfaces slide); returns
    // the risk and, if Z is set, writes the hidden pre-activations there.
    double field(const double* theta, double* F, double* Z) {
        const double risk = ev_.gradient(theta, slope(), intercept(), grad_.data(), Z);
        ++result_.n_gradient;
        for (int64_t i = 0; i < d_; ++i) F[i] = -grad_[i];
        if (!sliding_.empty()) slide(theta, F);
        return risk;
    }

    void unit_gradient(const double* theta, int64_t u, double* out) {
        ev_.unit_gradient(theta, slope(), intercept(), u, out);
    }

    // normals_ = grad z of one unit of each sliding surface.
    void surface_normals(const double* theta) {
        normals_.resize(sliding_.size() * d_);
        for (size_t s = 0; s < sliding_.size(); ++s) unit_gradient(theta, sliding_[s].units[0], &normals_[s * d_]);
    }

    // v -= N^T (N N^T)^{-1} N v for the rows N of normals_: v's part tangent to every surface.
    void remove_normal_part(double* v) {
        const int64_t S = int64_t(sliding_.size());
        gram_.assign(S * S, 0.0);
        rhs_.assign(S, 0.0);
        for (int64_t s = 0; s < S; ++s) {
            rhs_[s] = dot(&normals_[s * d_], v, d_);
            for (int64_t r = 0; r < S; ++r) gram_[s * S + r] = dot(&normals_[s * d_], &normals_[r * d_], d_);
        }
        if (!solve(S, gram_, rhs_)) return;
        for (int64_t s = 0; s < S; ++s)
            for (int64_t i = 0; i < d_; ++i) v[i] -= rhs_[s] * normals_[s * d_ + i];
    }

    void set_alpha(Surface& surface, double alpha) {
        surface.alpha = alpha;
        for (int64_t u : surface.units) pattern_.set_mix(u, surface.kink, alpha);
    }

    void sample_gradient(const double* theta, int64_t m, double* out) {
        ev_.sample_gradient(theta, slope(), intercept(), m, out);
        ++result_.n_sample_gradient;
    }

    // F holds the field with the current alphas. Newton's method on the alphas makes the normal
    // velocities of F vanish (F changes only through the samples whose units slide, so it is
    // updated sample by sample); then F is made exactly tangent (the sliding field does not
    // depend on the alphas: see flow.hpp).
    void slide(const double* theta, double* F) {
        const int64_t S = int64_t(sliding_.size());
        surface_normals(theta);
        sliding_samples_.clear();
        for (const Surface& surface : sliding_)
            for (int64_t u : surface.units) sliding_samples_.push_back(u / ev_.per_sample());
        std::sort(sliding_samples_.begin(), sliding_samples_.end());
        sliding_samples_.erase(std::unique(sliding_samples_.begin(), sliding_samples_.end()), sliding_samples_.end());
        const int64_t n_samples = int64_t(sliding_samples_.size());
        sample_grads_.resize(n_samples * d_);
        for (int64_t i = 0; i < n_samples; ++i) sample_gradient(theta, sliding_samples_[i], &sample_grads_[i * d_]);
        jacobian_.resize(S * S);
        direction_.resize(d_);
        bool moved = false;
        for (int iteration = 0; iteration < 6; ++iteration) {
            residual_.assign(S, 0.0);
            double largest = 0;
            for (int64_t s = 0; s < S; ++s) {
                residual_[s] = -dot(&normals_[s * d_], F, d_);
                largest = std::max(largest, std::fabs(residual_[s]) /
                                                (std::sqrt(dot(&normals_[s * d_], &normals_[s * d_], d_) *
                                                           dot(F, F, d_)) + 1e-300));
            }
            if (largest <= 1e-14) break;
            // Column r: d F / d alpha_r, exact because F is affine in each alpha separately.
            for (int64_t r = 0; r < S; ++r) {
                std::fill(direction_.begin(), direction_.end(), 0.0);
                Surface& surface = sliding_[r];
                const double alpha = surface.alpha;
                set_alpha(surface, alpha + 1);
                for (int64_t i = 0; i < n_samples; ++i) {
                    const int64_t m = sliding_samples_[i];
                    if (!has_unit_in(surface, m)) continue;
                    sample_gradient(theta, m, sample_work_.data());
                    for (int64_t c = 0; c < d_; ++c) direction_[c] -= sample_work_[c] - sample_grads_[i * d_ + c];
                }
                set_alpha(surface, alpha);
                for (int64_t s = 0; s < S; ++s) jacobian_[s * S + r] = dot(&normals_[s * d_], direction_.data(), d_);
            }
            if (!solve(S, jacobian_, residual_)) break;  // the one-sided fields agree on the normal
            double step = 0;
            for (int64_t s = 0; s < S; ++s) {
                set_alpha(sliding_[s], sliding_[s].alpha + residual_[s]);
                step = std::max(step, std::fabs(residual_[s]));
            }
            moved = true;
            for (int64_t i = 0; i < n_samples; ++i) {
                sample_gradient(theta, sliding_samples_[i], sample_work_.data());
                for (int64_t c = 0; c < d_; ++c) {
                    F[c] -= sample_work_[c] - sample_grads_[i * d_ + c];
                    sample_grads_[i * d_ + c] = sample_work_[c];
                }
            }
            if (step <= 1e-13) break;
        }
        // A surface's normal depends on the alphas of sliding units below it in the same sample.
        if (moved && ev_.hidden_layers() > 1) surface_normals(theta);
        remove_normal_part(F);
    }

    bool has_unit_in(const Surface& surface, int64_t m) const {
        for (int64_t u : surface.units)
            if (u / ev_.per_sample() == m) return true;
        return false;
    }

    // How far every alpha is inside [0, 1] (negative once one has left it). The slack keeps a
    // surface that was just entered with alpha at 0 or 1 from leaving on rounding.
    double alpha_margin() const {
        double margin = kInf;
        for (const Surface& surface : sliding_)
            margin = std::min(margin, std::min(surface.alpha, 1 - surface.alpha) + kAlphaSlack);
        return margin;
    }

    // Moves theta back onto every sliding surface (Gauss-Newton on z_s(theta) = kink_s).
    void project_state(double* theta) {
        const int64_t S = int64_t(sliding_.size());
        for (int iteration = 0; iteration < 4 && S > 0; ++iteration) {
            std::vector<double> offsets(S);
            double worst = 0;
            for (int64_t s = 0; s < S; ++s) {
                const double kink = pattern_.kink(sliding_[s].kink);
                offsets[s] = ev_.unit_value(theta, slope(), intercept(), sliding_[s].units[0]) - kink;
                worst = std::max(worst, std::fabs(offsets[s]) / (1 + std::fabs(kink)));
            }
            if (worst <= 4 * kEps) return;
            surface_normals(theta);
            gram_.assign(S * S, 0.0);
            for (int64_t s = 0; s < S; ++s)
                for (int64_t r = 0; r < S; ++r) gram_[s * S + r] = dot(&normals_[s * d_], &normals_[r * d_], d_);
            if (!solve(S, gram_, offsets)) return;
            for (int64_t s = 0; s < S; ++s)
                for (int64_t i = 0; i < d_; ++i) theta[i] -= offsets[s] * normals_[s * d_ + i];
        }
    }

    // ---- events ----------------------------------------------------------------------------

    struct Group {
        std::vector<int64_t> units;
        int kink;
        bool upper;  // for a crossing: the unit reached the kink above its piece
        std::vector<double> normal;
    };

    // Hits grouped into surfaces: units on the same kink whose switching functions coincide
    // (equal gradients; duplicate samples, for instance) move together.
    std::vector<Group> group(const double* theta, const std::vector<Hit>& hits, const std::vector<int>& kinks) {
        std::vector<Group> groups;
        std::vector<double> normal(d_);
        for (size_t i = 0; i < hits.size(); ++i) {
            unit_gradient(theta, hits[i].unit, normal.data());
            double scale = 0;
            for (double v : normal) scale = std::max(scale, std::fabs(v));
            Group* match = nullptr;
            for (Group& g : groups) {
                if (g.kink != kinks[i] || g.upper != hits[i].upper) continue;
                double diff = 0;
                for (int64_t c = 0; c < d_; ++c) diff = std::max(diff, std::fabs(g.normal[c] - normal[c]));
                if (diff <= 1e-12 * scale) {
                    match = &g;
                    break;
                }
            }
            if (match) match->units.push_back(hits[i].unit);
            else groups.push_back({{hits[i].unit}, kinks[i], hits[i].upper, normal});
        }
        return groups;
    }

    void set_pieces(const Group& g, int piece) {
        for (int64_t u : g.units) pattern_.set_piece(u, piece);
    }

    // The normal velocity d z / dt of the group's surface under the current pattern's field.
    double normal_velocity(const double* theta, const Group& g) {
        field(theta, work_.data(), nullptr);
        return dot(g.normal.data(), work_.data(), d_);
    }

    void record_event(double t, const Group& g, EventKind kind, int from, int to) {
        for (int64_t u : g.units) {
            int64_t m, k, j;
            ev_.locate(u, m, k, j);
            result_.events.push_back({t, k, m, j, int32_t(g.kink), kind, int32_t(from), int32_t(to)});
        }
    }

    void start_sliding(const Group& g, double alpha, double t, int from) {
        sliding_.push_back({g.units, g.kink, std::min(1.0, std::max(0.0, alpha))});
        for (int64_t u : g.units) surface_of_[u] = int32_t(sliding_.size() - 1);
        set_alpha(sliding_.back(), sliding_.back().alpha);
        record_event(t, g, EventKind::sliding_start, from, -1);
    }

    // Ends sliding on the surfaces whose alpha left [0, 1]: each takes the piece alpha left
    // towards. `force`: at a located exit, the surface closest to leaving ends even if its alpha,
    // re-solved from another starting guess, came back inside by a rounding error.
    bool end_sliding(double t, bool force) {
        std::vector<Surface> kept;
        bool ended = false;
        size_t worst = 0;
        for (size_t s = 1; s < sliding_.size(); ++s)
            if (std::min(sliding_[s].alpha, 1 - sliding_[s].alpha) < std::min(sliding_[worst].alpha, 1 - sliding_[worst].alpha))
                worst = s;
        for (size_t s = 0; s < sliding_.size(); ++s) {
            Surface& surface = sliding_[s];
            if (std::min(surface.alpha, 1 - surface.alpha) + kAlphaSlack >= 0 && !(force && s == worst)) {
                kept.push_back(surface);
                continue;
            }
            const int piece = surface.alpha > 0.5 ? surface.kink + 1 : surface.kink;
            for (int64_t u : surface.units) pattern_.set_piece(u, piece);
            record_event(t, Group{surface.units, surface.kink, false, {}}, EventKind::sliding_end, -1, piece);
            ended = true;
        }
        sliding_.swap(kept);
        std::fill(surface_of_.begin(), surface_of_.end(), -1);
        for (size_t s = 0; s < sliding_.size(); ++s)
            for (int64_t u : sliding_[s].units) surface_of_[u] = int32_t(s);
        return ended;
    }

    // Projects onto the sliding surfaces and ends sliding where the alphas there say so; a
    // surface ending can move the others' alphas, hence the rounds.
    void settle_sliding(double* theta, double t) {
        for (int64_t round = 0; round <= n_units_ && !sliding_.empty(); ++round) {
            project_state(theta);
            field(theta, work_.data(), nullptr);
            if (!end_sliding(t, false)) return;
        }
    }

    // A group of units reaching a kink from one side: crossing, sliding or a grazing touch.
    void classify_arrival(const double* theta, double t, const Group& g) {
        const int p = pattern_.piece[g.units[0]];
        const int q = g.upper ? p + 1 : p - 1;
        const double sigma = g.upper ? 1 : -1;
        set_pieces(g, q);
        const double v_new = normal_velocity(theta, g);
        if (sigma * v_new > 0) {
            record_event(t, g, EventKind::crossing, p, q);
            return;
        }
        set_pieces(g, p);
        const double v_old = normal_velocity(theta, g);
        if (sigma * v_old > 0) {
            const double v_lower = g.upper ? v_old : v_new, v_upper = g.upper ? v_new : v_old;
            start_sliding(g, v_lower / (v_lower - v_upper), t, p);
        } else {
            ++result_.n_grazing;
        }
    }

    // A group of units exactly at a kink at t = 0, where no side of arrival is known.
    void classify_start(const double* theta, const Group& g) {
        const int lower = g.kink, upper = g.kink + 1;
        set_pieces(g, lower);
        const double v_lower = normal_velocity(theta, g);
        set_pieces(g, upper);
        const double v_upper = normal_velocity(theta, g);
        if (v_lower > 0 && v_upper > 0) return;  // already on the upper piece
        if (v_lower < 0 && v_upper < 0) return set_pieces(g, lower);
        if (v_lower > 0 && v_upper < 0) return start_sliding(g, v_lower / (v_lower - v_upper), 0.0, -1);
        set_pieces(g, pattern_.convention_piece(g.kink));
    }

    // The activation pattern at theta_: pieces by position, layer by layer (a unit's
    // pre-activation depends on the pieces below it), then the units exactly at a kink.
    void initial_pattern() {
        for (int64_t k = 1; k <= ev_.hidden_layers(); ++k) {
            ev_.hidden(theta_.data(), slope(), intercept(), Z_start_.data());
            for (int64_t u = 0; u < n_units_; ++u) {
                int64_t m, layer, j;
                ev_.locate(u, m, layer, j);
                if (layer == k) pattern_.set_piece(u, pattern_.piece_at(Z_start_[u]));
            }
        }
        std::vector<Hit> at_kink;
        std::vector<int> kinks;
        for (int64_t u = 0; u < n_units_; ++u)
            for (int i = 0; i < pattern_.n_kinks(); ++i)
                if (Z_start_[u] == pattern_.kink(i)) {
                    at_kink.push_back({u, false});
                    kinks.push_back(i);
                }
        for (const Group& g : group(theta_.data(), at_kink, kinks)) classify_start(theta_.data(), g);
        settle_sliding(theta_.data(), 0.0);
    }

    // The state of the current step's interpolant at time t, into `out` (point_ by default).
    void state_at(double t, double* out = nullptr) {
        const double x = t >= t_stop_ ? (t_stop_ - t_step_) / h_step_ : (t - t_step_) / h_step_;
        dop853::dense_value(d_, coefficients_.data(), x, out ? out : point_.data());
    }

    static double time_tolerance(double a, double b) {
        return 4 * kEps * std::max(std::fabs(a), std::fabs(b));
    }

    // The distance of z into the unit's piece from its lower or upper boundary.
    double gap(int64_t u, bool upper, double z) const {
        const int p = pattern_.piece[u];
        return upper ? pattern_.kink(p) - z : z - pattern_.kink(p - 1);
    }

    // A boundary of a unit's piece reached between a and b: gap fa > 0 at a, fb <= 0 at b.
    struct Bracket {
        Hit hit;
        double a, fa, b, fb;
    };

    double gap_at(const Hit& c, double t) {
        state_at(t);
        return gap(c.unit, c.upper, ev_.unit_value(point_.data(), slope(), intercept(), c.unit));
    }

    // A unit that starts the interval [a, b] on its boundary (within rounding: it has just
    // switched or stopped sliding) and ends it outside has been inside in between and come
    // back; halving back from b finds a point inside to bracket the return.
    bool excursion(const Hit& c, double a, double b, double fb, Bracket& out) {
        double t_out = b, f_out = fb;
        for (int k = 0; k < 60; ++k) {
            const double t = a + (t_out - a) / 2;
            if (!(t > a && t < t_out)) break;
            const double f = gap_at(c, t);
            if (f > 0) {
                out = {c, t, f, t_out, f_out};
                return true;
            }
            t_out = t;
            f_out = f;
        }
        return false;
    }

    // The first time in the current step at which a unit reaches a boundary of its piece: scans
    // the node intervals in order and searches the units that leave in the first one. Sets
    // hits_ (and point_ to the state there).
    bool find_crossing(double& t_event) {
        const int n = options_.event_nodes;
        std::vector<Bracket> brackets;
        const std::vector<double>* before = &Z_start_;
        const std::vector<double>* after = nullptr;
        double t_before = t_step_, t_after = t_step_;
        for (int i = 1; i <= n + 1 && brackets.empty(); ++i) {
            if (i > 1) {
                std::swap(Z_before_, Z_node_);
                before = &Z_before_;
                t_before = t_after;
            }
            if (i <= n) {
                t_after = t_step_ + h_step_ * double(i) / (n + 1);
                state_at(t_after);
                ev_.hidden(point_.data(), slope(), intercept(), Z_node_.data());
                ++result_.n_forward;
                after = &Z_node_;
            } else {
                t_after = t_stop_;
                after = &Z_end_;
            }
            for (int64_t u = 0; u < n_units_; ++u) {
                if (surface_of_[u] >= 0) continue;
                const int p = pattern_.piece[u];
                for (const bool upper : {false, true}) {
                    if (upper ? p == pattern_.n_kinks() : p == 0) continue;
                    const Hit hit{u, upper};
                    const double g0 = gap(u, upper, (*before)[u]), g1 = gap(u, upper, (*after)[u]);
                    const double kink = pattern_.kink(upper ? p : p - 1);
                    Bracket bracket;
                    if (g0 > 0 && g1 <= 0)
                        brackets.push_back({hit, t_before, g0, t_after, g1});
                    else if (g0 <= 0 && g0 >= -kOnBoundary * (1 + std::fabs(kink)) && g1 < g0 &&
                             excursion(hit, t_before, t_after, g1, bracket))
                        brackets.push_back(bracket);
                }
            }
        }
        if (brackets.empty()) return false;
        std::vector<double> times;
        t_event = t_after;
        for (const Bracket& c : brackets) {
            auto phi = [&](double t) { return gap_at(c.hit, t); };
            times.push_back(illinois(phi, c.a, c.fa, c.b, c.fb, time_tolerance(c.a, c.b)));
            t_event = std::min(t_event, times.back());
        }
        state_at(t_event);
        hits_.clear();
        for (size_t i = 0; i < brackets.size(); ++i) {
            const Hit& c = brackets[i].hit;
            // (The first clause covers a root at the step's end, where the interpolant and
            // y_new may differ in the last bit.)
            if (times[i] == t_event ||
                gap(c.unit, c.upper, ev_.unit_value(point_.data(), slope(), intercept(), c.unit)) <= 0)
                hits_.push_back(c);
        }
        return true;
    }

    // The first time in (t_step_, t_limit] at which an alpha leaves [0, 1], given the margin
    // there; point_ is the state at that time.
    double find_exit(double t_limit, double margin_limit) {
        if (!(margin_start_ > 0)) {
            state_at(t_step_);
            return t_step_;
        }
        auto phi = [&](double t) {
            state_at(t);
            field(point_.data(), work_.data(), nullptr);
            return alpha_margin();
        };
        const double t_exit = illinois(phi, t_step_, margin_start_, t_limit, margin_limit,
                                       time_tolerance(t_step_, t_limit));
        state_at(t_exit);
        return t_exit;
    }

    // ---- output ----------------------------------------------------------------------------

    void record(double t, const double* theta, double risk) {
        if (!options_.save_steps) return;
        result_.t.push_back(t);
        result_.theta.insert(result_.theta.end(), theta, theta + d_);
        result_.risk.push_back(risk);
    }

    void emit(const double* theta) {
        result_.eval_theta.insert(result_.eval_theta.end(), theta, theta + d_);
        result_.eval_risk.push_back(ev_.risk(theta, slope(), intercept()));
        ++result_.n_forward;
    }

    // The requested states in the current step up to t_to, and the step's interpolant (point_,
    // which may hold the state at an event, is left alone).
    void emit_step(double t_to) {
        while (next_eval_ < options_.t_eval.size() && options_.t_eval[next_eval_] <= t_to) {
            state_at(options_.t_eval[next_eval_++], scratch_.data());
            emit(scratch_.data());
        }
        if (options_.dense_output) {
            result_.dense_t.push_back(t_step_);
            result_.dense_h.push_back(h_step_);
            result_.dense_stop.push_back(t_to);
            result_.dense_coefficients.insert(result_.dense_coefficients.end(), coefficients_.begin(),
                                              coefficients_.end());
        }
    }

    bool fail(const std::string& message) {
        result_.success = false;
        result_.message = message;
        return false;
    }

public:
    Result run() {
        auto rhs = [this](const double* y, double* f) { field(y, f, nullptr); };
        double t = 0;
        if (events_possible_) initial_pattern();
        double risk = field(theta_.data(), f_.data(), events_possible_ ? Z_start_.data() : nullptr);
        margin_start_ = alpha_margin();
        record(0, theta_.data(), risk);
        while (next_eval_ < options_.t_eval.size() && options_.t_eval[next_eval_] <= 0) {
            emit(theta_.data());
            ++next_eval_;
        }
        const double t_end = options_.t_end;
        double h = options_.first_step > 0
                       ? options_.first_step
                       : dop853::initial_step(rhs, d_, theta_.data(), f_.data(), t_end, options_.rtol, options_.atol,
                                              work_.data(), scratch_.data());
        bool rejected = false;
        int64_t stalled = 0, iterations = 0;
        const double exponent = -1.0 / (dop853::kErrorOrder + 1);
        while (t < t_end) {
            if ((++iterations & 63) == 0 && interrupted_ && interrupted_()) {
                fail("interrupted at t = " + std::to_string(t));
                break;
            }
            if (result_.n_steps >= options_.max_steps) {
                fail("max_steps = " + std::to_string(options_.max_steps) + " reached at t = " + std::to_string(t));
                break;
            }
            h = std::min(h, options_.max_step);
            const bool last = t + h >= t_end;
            if (last) h = t_end - t;
            if (!(h > 10 * (std::nextafter(t, kInf) - t))) {
                fail("step size fell below the resolution of t at t = " + std::to_string(t));
                break;
            }
            std::copy(f_.begin(), f_.end(), K_.begin());
            dop853::step(rhs, d_, theta_.data(), h, K_.data(), y_new_.data(), work_.data());
            const double error = dop853::error_norm(d_, K_.data(), h, theta_.data(), y_new_.data(), options_.rtol,
                                                    options_.atol);
            if (!(error <= 1)) {
                ++result_.n_rejected;
                h *= std::isfinite(error) ? std::max(0.2, 0.9 * std::pow(error, exponent)) : 0.2;
                rejected = true;
                continue;
            }
            double factor = error == 0 ? 10 : std::min(10.0, 0.9 * std::pow(error, exponent));
            if (rejected) factor = std::min(1.0, factor);
            rejected = false;
            const double h_next = h * factor;
            t_step_ = t;
            h_step_ = h;
            t_stop_ = last ? t_end : t + h;
            double* f_new = K_.data() + dop853::kStages * d_;
            const double risk_new = field(y_new_.data(), f_new, events_possible_ ? Z_end_.data() : nullptr);
            const double margin_new = alpha_margin();
            const bool wants_eval = next_eval_ < options_.t_eval.size() && options_.t_eval[next_eval_] <= t_stop_;
            if (events_possible_ || options_.dense_output || wants_eval)
                dop853::dense_coefficients(rhs, d_, theta_.data(), y_new_.data(), h, K_.data(), coefficients_.data(),
                                           work_.data());
            ++result_.n_steps;

            enum { none, crossing, exit } kind = none;
            double t_event = t_stop_;
            if (events_possible_ && find_crossing(t_event)) kind = crossing;
            if (!sliding_.empty()) {
                double margin = margin_new;
                if (kind == crossing) {
                    field(point_.data(), work_.data(), nullptr);
                    margin = alpha_margin();
                }
                if (margin < 0) {
                    t_event = find_exit(t_event, margin);
                    kind = exit;
                }
            }
            if (kind == none) {
                emit_step(t_stop_);
                t = t_stop_;
                std::swap(theta_, y_new_);
                std::copy(f_new, f_new + d_, f_.begin());
                std::swap(Z_start_, Z_end_);
                risk = risk_new;
                margin_start_ = margin_new;
                if (!sliding_.empty()) {
                    project_state(theta_.data());
                    risk = field(theta_.data(), f_.data(), Z_start_.data());
                    margin_start_ = alpha_margin();
                }
            } else {
                emit_step(t_event);
                std::copy(point_.begin(), point_.end(), theta_.begin());
                t = t_event;
                if (kind == crossing) {
                    std::vector<int> kinks;
                    for (const Hit& hit : hits_) {
                        const int p = pattern_.piece[hit.unit];
                        kinks.push_back(hit.upper ? p : p - 1);
                    }
                    for (const Group& g : group(theta_.data(), hits_, kinks)) classify_arrival(theta_.data(), t, g);
                } else {
                    field(theta_.data(), work_.data(), nullptr);
                    end_sliding(t, true);
                }
                settle_sliding(theta_.data(), t);
                risk = field(theta_.data(), f_.data(), Z_start_.data());
                margin_start_ = alpha_margin();
                if (t - t_step_ <= time_tolerance(t, t_step_)) {
                    if (++stalled > 1000) {
                        fail("events accumulate at t = " + std::to_string(t) + " (1000 events without progress)");
                        record(t, theta_.data(), risk);
                        break;
                    }
                } else {
                    stalled = 0;
                }
            }
            record(t, theta_.data(), risk);
            h = h_next;
        }
        result_.final_theta = theta_;
        result_.final_risk = risk;
        return std::move(result_);
    }

private:
    static constexpr double kAlphaSlack = 1e-10;
    // A unit this close outside its piece (relative to 1 + |kink|) counts as on the boundary.
    static constexpr double kOnBoundary = 1e-10;

    Options options_;
    const std::function<bool()>& interrupted_;
    Evaluator ev_;
    int64_t d_, n_units_;
    Pattern pattern_;
    bool events_possible_;
    std::vector<Surface> sliding_;
    std::vector<int32_t> surface_of_;
    std::vector<double> theta_, f_, grad_, y_new_, work_, point_, scratch_, sample_work_, K_, coefficients_;
    std::vector<double> Z_start_, Z_end_, Z_node_, Z_before_;
    std::vector<double> normals_, gram_, rhs_, jacobian_, residual_, direction_, sample_grads_;
    std::vector<int64_t> sliding_samples_;
    std::vector<Hit> hits_;
    double t_step_ = 0, h_step_ = 1, t_stop_ = 0, margin_start_ = kInf;
    size_t next_eval_ = 0;
    Result result_;
};

void check_options(const Options& o) {
    auto positive = [](double v, const char* name) {
        if (!(v > 0 && std::isfinite(v)))
            throw std::invalid_argument(std::string(name) + " must be a positive finite number, got " + std::to_string(v));
    };
    positive(o.t_end, "t_end");
    positive(o.rtol, "rtol");
    positive(o.atol, "atol");
    if (o.rtol < 100 * kEps) throw std::invalid_argument("rtol must be at least 100 * machine epsilon (2.2e-14)");
    if (!(o.first_step >= 0) || !std::isfinite(o.first_step))
        throw std::invalid_argument("first_step must be 0 (automatic) or a positive finite number");
    if (!(o.max_step > 0)) throw std::invalid_argument("max_step must be positive");
    if (o.max_steps < 1) throw std::invalid_argument("max_steps must be at least 1");
    if (o.event_nodes < 1 || o.event_nodes > 64) throw std::invalid_argument("event_nodes must lie in [1, 64]");
    for (size_t i = 0; i < o.t_eval.size(); ++i)
        if (!(o.t_eval[i] >= 0 && o.t_eval[i] <= o.t_end) || (i > 0 && !(o.t_eval[i] >= o.t_eval[i - 1])))
            throw std::invalid_argument("t_eval must be non-decreasing times in [0, t_end]");
}

}  // namespace

Result integrate(const NetSpec& spec, const double* theta0, const Batch<double>& data, const Options& options,
                 const std::function<bool()>& interrupted) {
    check_options(options);
    Integrator integrator(spec, theta0, data, options, interrupted);
    return integrator.run();
}

}  // namespace flow
}  // namespace gengrad
