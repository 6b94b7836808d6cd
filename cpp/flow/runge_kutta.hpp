// What the two Runge-Kutta pairs (dop853.hpp, dopri5.hpp) share: the explicit step, and the
// form of the interpolant of a step on [t, t + h]: theta(t + x h) = sum_k c_k x^k,
// k = 0..kDenseRows-1, the coefficients stored kDenseRows x n, row k holding c_k. Both pairs
// write their dense output in this form (DOP853 degree 7, DOPRI5 degree 4, the higher rows
// zero), so the event scans, t_eval and Python's DenseOutput read one form.
#pragma once
#include <cstdint>

namespace gengrad {
namespace flow {

constexpr int kDenseRows = 8;

// Stages 1..stages-1 of an explicit step into the rows of K (K[0] = F(y) on entry), each
// evaluated at y + h sum_j a(s, j) K[j], and y_new = y + h sum_j a(stages, j) K[j] (the
// weights); does not evaluate F(y_new).
template <class Field, class Tableau>
void explicit_step(Field& field, int64_t n, const double* y, double h, double* K, double* y_new, double* work,
                   int stages, Tableau a) {
    for (int s = 1; s <= stages; ++s) {
        double* target = s == stages ? y_new : work;
        for (int64_t i = 0; i < n; ++i) {
            double sum = 0;
            for (int j = 0; j < s; ++j) sum += a(s, j) * K[j * n + i];
            target[i] = y[i] + h * sum;
        }
        if (s < stages) field(work, K + s * n);
    }
}

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
