// The small dense systems of the flow: Gram matrices of switching-surface normals (Cholesky)
// and the Jacobians of coupled Filippov weights (LU). Sizes are the number of surfaces that
// slide at once, so plain loops.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>
#include <vector>

namespace gengrad {
namespace flow {

// A (n x n, row-major, symmetric; the lower triangle is read) becomes its Cholesky factor L.
// False when A is numerically singular: a pivot below 1e-12 of the largest diagonal entry
// (linearly dependent normals).
inline bool cholesky_factor(std::vector<double>& A, size_t n) {
    double largest = 0;
    for (size_t i = 0; i < n; ++i) largest = std::max(largest, A[i * n + i]);
    for (size_t j = 0; j < n; ++j) {
        double pivot = A[j * n + j];
        for (size_t k = 0; k < j; ++k) pivot -= A[j * n + k] * A[j * n + k];
        if (!(pivot > 1e-12 * largest)) return false;
        const double root = std::sqrt(pivot);
        A[j * n + j] = root;
        for (size_t i = j + 1; i < n; ++i) {
            double sum = A[i * n + j];
            for (size_t k = 0; k < j; ++k) sum -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = sum / root;
        }
    }
    return true;
}

// Solves L L^T x = b in place of b.
inline void cholesky_solve(const std::vector<double>& L, size_t n, double* b) {
    for (size_t i = 0; i < n; ++i) {
        double sum = b[i];
        for (size_t k = 0; k < i; ++k) sum -= L[i * n + k] * b[k];
        b[i] = sum / L[i * n + i];
    }
    for (size_t i = n; i-- > 0;) {
        double sum = b[i];
        for (size_t k = i + 1; k < n; ++k) sum -= L[k * n + i] * b[k];
        b[i] = sum / L[i * n + i];
    }
}

// Solves A x = b in place of b by Gaussian elimination with partial pivoting (A is
// overwritten); false when A is numerically singular.
inline bool lu_solve(std::vector<double>& A, size_t n, double* b) {
    double largest = 0;
    for (double a : A) largest = std::max(largest, std::fabs(a));
    if (!(largest > 0)) return false;
    for (size_t c = 0; c < n; ++c) {
        size_t pivot = c;
        for (size_t r = c + 1; r < n; ++r)
            if (std::fabs(A[r * n + c]) > std::fabs(A[pivot * n + c])) pivot = r;
        if (std::fabs(A[pivot * n + c]) <= 1e-13 * largest) return false;
        if (pivot != c) {
            for (size_t k = 0; k < n; ++k) std::swap(A[c * n + k], A[pivot * n + k]);
            std::swap(b[c], b[pivot]);
        }
        for (size_t r = c + 1; r < n; ++r) {
            const double factor = A[r * n + c] / A[c * n + c];
            for (size_t k = c; k < n; ++k) A[r * n + k] -= factor * A[c * n + k];
            b[r] -= factor * b[c];
        }
    }
    for (size_t c = n; c-- > 0;) {
        double sum = b[c];
        for (size_t k = c + 1; k < n; ++k) sum -= A[c * n + k] * b[k];
        b[c] = sum / A[c * n + c];
    }
    return true;
}

// The Levenberg-Marquardt step for the n x n system J x = b in place of b: the least-squares
// solution, damped by 1e-10 of the largest diagonal entry of J^T J, so that a singular J (an
// undetermined direction) gives the smallest step instead of none. False if J is zero.
inline bool least_squares_step(const std::vector<double>& J, size_t n, double* b) {
    std::vector<double> A(n * n, 0.0), rhs(n, 0.0);
    double largest = 0;
    for (size_t i = 0; i < n; ++i)
        for (size_t j = 0; j < n; ++j) {
            for (size_t k = 0; k < n; ++k) A[i * n + j] += J[k * n + i] * J[k * n + j];
            rhs[i] += J[j * n + i] * b[j];
        }
    for (size_t i = 0; i < n; ++i) largest = std::max(largest, A[i * n + i]);
    if (!(largest > 0)) return false;
    for (size_t i = 0; i < n; ++i) A[i * n + i] += 1e-10 * largest;
    if (!cholesky_factor(A, n)) return false;
    cholesky_solve(A, n, rhs.data());
    std::copy(rhs.begin(), rhs.end(), b);
    return true;
}

}  // namespace flow
}  // namespace gengrad
