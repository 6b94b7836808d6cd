// The interpolant of a step on [t, t + h]: theta(t + x h) = sum_k c_k x^k, k = 0..kDenseRows-1,
// the coefficients stored kDenseRows x n, row k holding c_k. Both Runge-Kutta pairs write their
// dense output in this form (DOP853 degree 7, DOPRI5 degree 4, the higher rows zero), so the
// event scans, t_eval and Python's DenseOutput read one form.
#pragma once
#include <cstdint>

namespace gengrad {
namespace flow {

constexpr int kDenseRows = 8;

// Components [0, count) (count < 0: all n) of the interpolant at x.
inline void dense_value(int64_t n, const double* coefficients, double x, double* out, int64_t count = -1) {
    for (int64_t i = 0; i < (count < 0 ? n : count); ++i) {
        double value = coefficients[(kDenseRows - 1) * n + i];
        for (int k = kDenseRows - 2; k >= 0; --k) value = value * x + coefficients[k * n + i];
        out[i] = value;
    }
}

// Its derivative in t at x, for a step of size h.
inline void dense_derivative(int64_t n, const double* coefficients, double x, double h, double* out) {
    for (int64_t i = 0; i < n; ++i) {
        double slope = (kDenseRows - 1) * coefficients[(kDenseRows - 1) * n + i];
        for (int k = kDenseRows - 2; k >= 1; --k) slope = slope * x + k * coefficients[k * n + i];
        out[i] = slope / h;
    }
}

}  // namespace flow
}  // namespace gengrad
