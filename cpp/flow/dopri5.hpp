// Dormand and Prince's explicit Runge-Kutta pair of order 5(4) with its free dense output of
// order 4 (Hairer, Norsett, Wanner, Solving Ordinary Differential Equations I, 2nd ed., §II.4
// and §II.6; SciPy's RK45): six new evaluations of F per step against DOP853's fifteen with its
// dense output, which pays where switching events, not the tolerance, set the step size. The
// coefficients are SciPy 1.17's (scipy/integrate/_ivp/rk.py, RK45), printed with repr().
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "flow/runge_kutta.hpp"

namespace gengrad {
namespace flow {
namespace dopri5 {

constexpr int kStages = 6;      // stage 6 is F(y_new), reused (FSAL)
constexpr int kErrorOrder = 4;  // the step-size controller and the starting step use it

constexpr double A[6][5] = {
    {0.0, 0.0, 0.0, 0.0, 0.0},
    {0.2, 0.0, 0.0, 0.0, 0.0},
    {0.075, 0.225, 0.0, 0.0, 0.0},
    {0.9777777777777777, -3.7333333333333334, 3.5555555555555554, 0.0, 0.0},
    {2.9525986892242035, -11.595793324188385, 9.822892851699436, -0.2908093278463649, 0.0},
    {2.8462752525252526, -10.757575757575758, 8.906422717743473, 0.2784090909090909, -0.2735313036020583},
};
constexpr double B[6] = {0.09114583333333333, 0.0, 0.44923629829290207, 0.6510416666666666, -0.322376179245283,
                         0.13095238095238096};
constexpr double E[7] = {-0.0012326388888888888, 0.0, 0.0042527702905061394, -0.03697916666666667,
                         0.05086379716981132, -0.0419047619047619, 0.025};
constexpr double P[7][4] = {
    {1.0, -2.8535800653862835, 3.0717434641059005, -1.1270175653862835},
    {0.0, 0.0, 0.0, 0.0},
    {0.0, 4.023133379230305, -6.249321565289, 2.675424484351598},
    {0.0, -3.7324019615885042, 10.068970589843675, -5.685526961588504},
    {0.0, 2.5548038301849423, -6.399112377351017, 3.5219323679207912},
    {0.0, -1.3744241142186024, 3.272657752246729, -1.7672812570757455},
    {0.0, 1.3824689317781436, -3.764937863556287, 2.382468931778144},
};

// K is a (kStages + 1 x n) row-major array of stages, K[0] = F(y) on entry. Fills K[1..5] and
// y_new = y + h sum_i B[i] K[i]; does not evaluate F(y_new) (K[6], the caller's).
template <class Field>
void step(Field& field, int64_t n, const double* y, double h, double* K, double* y_new, double* work) {
    explicit_step(field, n, y, h, K, y_new, work, kStages, [](int s, int j) { return s == kStages ? B[j] : A[s][j]; });
}

// The RMS norm of h sum_i E[i] K[i] relative to atol + rtol max(|y|, |y_new|), with
// K[kStages] = F(y_new) (a value below 1 accepts the step).
inline double error_norm(int64_t n, const double* K, double h, const double* y, const double* y_new, double rtol,
                         double atol) {
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) {
        double e = 0;
        for (int j = 0; j <= kStages; ++j) e += E[j] * K[j * n + i];
        const double scale = atol + rtol * std::max(std::fabs(y[i]), std::fabs(y_new[i]));
        e *= h / scale;
        sum += e * e;
    }
    return std::sqrt(sum / double(n));
}

// The interpolant on [t, t + h] in powers of x (runge_kutta.hpp), given K[kStages] = F(y_new).
inline void dense_coefficients(int64_t n, const double* y, double h, const double* K, double* coefficients) {
    for (int64_t i = 0; i < n; ++i) {
        coefficients[i] = y[i];
        for (int k = 0; k < 4; ++k) {
            double sum = 0;
            for (int j = 0; j <= kStages; ++j) sum += P[j][k] * K[j * n + i];
            coefficients[(k + 1) * n + i] = h * sum;
        }
        for (int k = 5; k < kDenseRows; ++k) coefficients[k * n + i] = 0;
    }
}

}  // namespace dopri5
}  // namespace flow
}  // namespace gengrad
