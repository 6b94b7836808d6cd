// Activations (docs/math.md §3): value, generalized derivative, and the approximants A_r.
//
// Every activation is a policy with `value(V)` and `derivative(V)` for V a scalar or a vector
// (simd.hpp), and `is_kink(T)` for the kink statistics. The piecewise-linear activations (relu,
// leaky_relu, hardtanh/clip, relu6, abs, identity) are one parametrised policy: their kinks,
// slopes and conventions come from gengrad/activations.py, the one table of named activations.
#pragma once
#include <cmath>
#include <limits>

#include "gengrad/host_device.hpp"
#include "gengrad/contract.hpp"
#include "gengrad/simd.hpp"

namespace gengrad {
namespace GENGRAD_ISA_NS {

template <class T>
struct PiecewiseLinear {
    T kink0, kink1, slope0, slope1, slope2, offset;
    T derivative0, derivative1;  // the convention at each kink
    int n_kinks;

    explicit PiecewiseLinear(const PiecewiseLinearParams& p)
        : kink0(T(p.kink[0])),
          kink1(p.n_kinks == 2 ? T(p.kink[1]) : std::numeric_limits<T>::infinity()),
          slope0(T(p.slope[0])),
          slope1(T(p.slope[1])),
          slope2(T(p.slope[2])),
          offset(T(p.offset)),
          derivative0(p.right_sided[0] ? slope1 : slope0),
          derivative1(p.right_sided[1] ? slope2 : slope1),
          n_kinks(p.n_kinks) {}

    template <class V>
    GENGRAD_HD V value(V z) const {
        const V lo = splat<V>(kink0), hi = splat<V>(kink1), zero{};
        const V clamped = z < lo ? lo : (z > hi ? hi : z);
        const V below = z - lo, above = z - hi;
        return slope1 * clamped + slope0 * (below < zero ? below : zero) +
               slope2 * (above > zero ? above : zero) + offset;
    }

    template <class V>
    GENGRAD_HD V derivative(V z) const {
        const V lo = splat<V>(kink0), hi = splat<V>(kink1);
        return z < lo    ? splat<V>(slope0)
               : z == lo ? splat<V>(derivative0)
               : z < hi  ? splat<V>(slope1)
               : z == hi ? splat<V>(derivative1)
                         : splat<V>(slope2);
    }

    GENGRAD_HD bool is_kink(T z) const { return n_kinks > 0 && (z == kink0 || z == kink1); }
};

// relu itself: the same function as PiecewiseLinear with kink 0 and slopes 0, 1, but one vector
// operation per value instead of about fifteen, which matters in the epilogues of narrow layers.
template <class T>
struct Relu {
    bool right_sided;  // relu'(0) = 1 instead of 0

    template <class V>
    GENGRAD_HD V value(V z) const {
        const V zero{};
        return z > zero ? z : zero;
    }
    template <class V>
    GENGRAD_HD V derivative(V z) const {
        const V zero{}, one = splat<V>(T(1));
        return (right_sided ? z >= zero : z > zero) ? one : zero;
    }
    GENGRAD_HD bool is_kink(T z) const { return z == 0; }

    static bool describes(const PiecewiseLinear<T>& p) {
        return p.n_kinks == 1 && p.kink0 == 0 && p.slope0 == 0 && p.slope1 == 1 && p.offset == 0;
    }
};

// The profiles of the admissible families: Phi(t) on [0, 1] with Phi(0) = 0, Phi(1) = 1 and
// phi = Phi' with phi(0) = 0, phi(1) = 1, so that gluing the window to the activation is C^1.
template <class T>
struct Profile {
    Family family;
    GENGRAD_HD T Phi(T t) const {
        return family == Family::cubic ? t * t * (2 - t)
                                       : t * t / 2 + (1 - std::cos(T(M_PI) * t)) / 4;
    }
    GENGRAD_HD T phi(T t) const {
        return family == Family::cubic ? t * (4 - 3 * t) : t + T(M_PI) / 4 * std::sin(T(M_PI) * t);
    }
};

template <class T>
GENGRAD_HD inline T softplus_scalar(T x) {
    return (x > 0 ? x : T(0)) + std::log1p(std::exp(-std::fabs(x)));
}

template <class T>
GENGRAD_HD inline T sigmoid_scalar(T x) {
    if (x >= 0) return 1 / (1 + std::exp(-x));
    const T e = std::exp(x);
    return e / (1 + e);
}

// A_r for a piecewise-linear activation. Admissible families change the activation only in a
// window of width 1/r on the side of each kink whose derivative is not the convention, so that
// A_r'(kink) is the convention; the softplus families replace each kink by a softplus of
// sharpness r, centred (plain) or shifted by log r towards the convention's side.
template <class T>
struct Approximant {
    PiecewiseLinear<T> base;
    Family family;
    T r;

    GENGRAD_HD T kink(int i) const { return i == 0 ? base.kink0 : base.kink1; }
    GENGRAD_HD T slope(int i) const { return i == 0 ? base.slope0 : i == 1 ? base.slope1 : base.slope2; }
    GENGRAD_HD bool right_sided(int i) const {
        return (i == 0 ? base.derivative0 : base.derivative1) == slope(i + 1);
    }
    GENGRAD_HD bool admissible() const { return family == Family::cubic || family == Family::sine; }
    GENGRAD_HD T softplus_shift(int i) const {
        if (family == Family::softplus) return 0;
        return right_sided(i) ? std::log(r) : -std::log(r);
    }

    GENGRAD_HD T value_scalar(T z) const {
        if (admissible()) {
            T a = base.value(z);
            const Profile<T> profile{family};
            for (int i = 0; i < base.n_kinks; ++i) {
                const T t = right_sided(i) ? r * (kink(i) - z) : r * (z - kink(i));
                if (t > 0 && t < 1) a += (slope(i + 1) - slope(i)) * (profile.Phi(t) - t) / r;
            }
            return a;
        }
        T a = base.value(kink(0)) + slope(0) * (z - kink(0));
        for (int i = 0; i < base.n_kinks; ++i)
            a += (slope(i + 1) - slope(i)) * softplus_scalar(r * (z - kink(i)) + softplus_shift(i)) / r;
        return a;
    }

    GENGRAD_HD T derivative_scalar(T z) const {
        if (admissible()) {
            const Profile<T> profile{family};
            for (int i = 0; i < base.n_kinks; ++i) {
                const T jump = slope(i + 1) - slope(i);
                if (right_sided(i)) {
                    const T t = r * (kink(i) - z);
                    if (t > 0 && t < 1) return slope(i + 1) - jump * profile.phi(t);
                } else {
                    const T t = r * (z - kink(i));
                    if (t > 0 && t < 1) return slope(i) + jump * profile.phi(t);
                }
            }
            return base.derivative(z);
        }
        T d = slope(0);
        for (int i = 0; i < base.n_kinks; ++i)
            d += (slope(i + 1) - slope(i)) * sigmoid_scalar(r * (z - kink(i)) + softplus_shift(i));
        return d;
    }

    template <class V>
    GENGRAD_HD V value(V z) const {
        return map_lanes<T>(z, [this](T x) { return value_scalar(x); });
    }
    template <class V>
    GENGRAD_HD V derivative(V z) const {
        return map_lanes<T>(z, [this](T x) { return derivative_scalar(x); });
    }
    GENGRAD_HD bool is_kink(T z) const { return base.is_kink(z); }
};

// Smooth activations: the generalized derivative is the derivative, and A_r = a for every r.
template <class T, class F>
struct Smooth {
    template <class V>
    GENGRAD_HD V value(V z) const {
        return map_lanes<T>(z, [](T x) { return F::value(x); });
    }
    template <class V>
    GENGRAD_HD V derivative(V z) const {
        return map_lanes<T>(z, [](T x) { return F::derivative(x); });
    }
    GENGRAD_HD bool is_kink(T) const { return false; }
};

template <class T>
struct TanhF {
    GENGRAD_HD static T value(T x) { return std::tanh(x); }
    GENGRAD_HD static T derivative(T x) {
        const T t = std::tanh(x);
        return 1 - t * t;
    }
};

template <class T>
struct SigmoidF {
    GENGRAD_HD static T value(T x) { return sigmoid_scalar(x); }
    GENGRAD_HD static T derivative(T x) {
        const T s = sigmoid_scalar(x);
        return s * (1 - s);
    }
};

template <class T>
struct SoftplusF {
    GENGRAD_HD static T value(T x) { return softplus_scalar(x); }
    GENGRAD_HD static T derivative(T x) { return sigmoid_scalar(x); }
};

template <class T>
struct GeluF {  // the exact form x Phi(x), not tanh's approximation
    // Phi(x) = erfc(-x / sqrt 2) / 2 rather than (1 + erf(x / sqrt 2)) / 2, which cancels for
    // negative x: in float32 (PyTorch's erf) 4 % off at x = -5, 57 % at -5.5 and 0 from -6 on;
    // erfc is within 2e-6 there.
    GENGRAD_HD static T Phi(T x) { return T(0.5) * std::erfc(-x * T(M_SQRT1_2)); }
    GENGRAD_HD static T value(T x) { return x * Phi(x); }
    GENGRAD_HD static T derivative(T x) { return Phi(x) + x * std::exp(-x * x / 2) * T(0.5 * M_2_SQRTPI * M_SQRT1_2); }
};

template <class T>
struct SiluF {
    GENGRAD_HD static T value(T x) { return x * sigmoid_scalar(x); }
    GENGRAD_HD static T derivative(T x) {
        const T s = sigmoid_scalar(x);
        return s * (1 + x * (1 - s));
    }
};

// Calls f(activation policy) with the policy that `net` and `approx` describe.
template <class T, class F>
auto with_activation(const NetSpec& net, Approximation approx, F&& f) {
    switch (net.activation) {
        case ActivationKind::tanh: return f(Smooth<T, TanhF<T>>{});
        case ActivationKind::sigmoid: return f(Smooth<T, SigmoidF<T>>{});
        case ActivationKind::softplus: return f(Smooth<T, SoftplusF<T>>{});
        case ActivationKind::gelu: return f(Smooth<T, GeluF<T>>{});
        case ActivationKind::silu: return f(Smooth<T, SiluF<T>>{});
        case ActivationKind::piecewise_linear: break;
    }
    const PiecewiseLinear<T> pwl(net.pwl);
    if (approx.family == Family::exact && Relu<T>::describes(pwl)) return f(Relu<T>{net.pwl.right_sided[0]});
    if (approx.family == Family::exact || pwl.n_kinks == 0) return f(pwl);
    return f(Approximant<T>{pwl, approx.family, T(approx.r)});
}

}  // namespace GENGRAD_ISA_NS
}  // namespace gengrad
