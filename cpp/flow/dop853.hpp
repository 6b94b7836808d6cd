// Dormand and Prince's explicit Runge-Kutta pair of order 8(5,3) with its dense output of
// order 7 (Hairer, Norsett, Wanner, Solving Ordinary Differential Equations I, 2nd ed., §II.10;
// their code DOP853). The coefficients below were generated from SciPy 1.17's
// scipy/integrate/_ivp/dop853_coefficients.py (the same tables) with repr(), so each literal is
// the exact double SciPy uses. Nothing here knows about networks: the field is any callable
// field(y, f) writing f = F(y) for an autonomous system y' = F(y).
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "flow/runge_kutta.hpp"

namespace gengrad {
namespace flow {
namespace dop853 {

constexpr int kStages = 12;          // stages of one step; stage 12 is F(y_new), reused (FSAL)
constexpr int kExtendedStages = 16;  // with the three extra stages of the dense output
constexpr int kErrorOrder = 7;  // the step-size controller and the starting step use it

constexpr double C[16] = {0.0, 0.05260015195876773, 0.0789002279381516, 0.1183503419072274, 0.2816496580927726, 0.3333333333333333, 0.25, 0.3076923076923077, 0.6512820512820513, 0.6, 0.8571428571428571, 1.0, 1.0, 0.1, 0.2, 0.7777777777777778};
constexpr double A[16][16] = {
    {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {0.05260015195876773, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {0.0197250569845379, 0.0591751709536137, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {0.02958758547680685, 0.0, 0.08876275643042054, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {0.2413651341592667, 0.0, -0.8845494793282861, 0.924834003261792, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {0.037037037037037035, 0.0, 0.0, 0.17082860872947386, 0.12546768756682242, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {0.037109375, 0.0, 0.0, 0.17025221101954405, 0.06021653898045596, -0.017578125, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {0.03709200011850479, 0.0, 0.0, 0.17038392571223998, 0.10726203044637328, -0.015319437748624402, 0.008273789163814023, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {0.6241109587160757, 0.0, 0.0, -3.3608926294469414, -0.868219346841726, 27.59209969944671, 20.154067550477894, -43.48988418106996, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {0.47766253643826434, 0.0, 0.0, -2.4881146199716677, -0.590290826836843, 21.230051448181193, 15.279233632882423, -33.28821096898486, -0.020331201708508627, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {-0.9371424300859873, 0.0, 0.0, 5.186372428844064, 1.0914373489967295, -8.149787010746927, -18.52006565999696, 22.739487099350505, 2.4936055526796523, -3.0467644718982196, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0},
    {2.273310147516538, 0.0, 0.0, -10.53449546673725, -2.0008720582248625, -17.9589318631188, 27.94888452941996, -2.8589982771350235, -8.87285693353063, 12.360567175794303, 0.6433927460157636, 0.0, 0.0, 0.0, 0.0, 0.0},
    {0.054293734116568765, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003, -5.801203960010585, 0.3111643669578199, -0.1521609496625161, 0.20136540080403034, 0.04471061572777259, 0.0, 0.0, 0.0, 0.0},
    {0.056167502283047954, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25350021021662483, -0.2462390374708025, -0.12419142326381637, 0.15329179827876568, 0.00820105229563469, 0.007567897660545699, -0.008298, 0.0, 0.0, 0.0},
    {0.03183464816350214, 0.0, 0.0, 0.0, 0.0, 0.028300909672366776, 0.053541988307438566, -0.05492374857139099, 0.0, 0.0, -0.00010834732869724932, 0.0003825710908356584, -0.00034046500868740456, 0.1413124436746325, 0.0, 0.0},
    {-0.42889630158379194, 0.0, 0.0, 0.0, 0.0, -4.697621415361164, 7.683421196062599, 4.06898981839711, 0.3567271874552811, 0.0, 0.0, 0.0, -0.0013990241651590145, 2.9475147891527724, -9.15095847217987, 0.0},
};
constexpr double E3[13] = {-0.18980075407240762, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003, -5.801203960010585, -0.4226823213237919, -0.1521609496625161, 0.20136540080403034, 0.02265179219836082, 0.0};
constexpr double E5[13] = {0.01312004499419488, 0.0, 0.0, 0.0, 0.0, -1.2251564463762044, -0.4957589496572502, 1.6643771824549864, -0.35032884874997366, 0.3341791187130175, 0.08192320648511571, -0.022355307863886294, 0.0};
constexpr double D[4][16] = {
    {-8.428938276109013, 0.0, 0.0, 0.0, 0.0, 0.5667149535193777, -3.0689499459498917, 2.38466765651207, 2.117034582445028, -0.871391583777973, 2.2404374302607883, 0.6315787787694688, -0.08899033645133331, 18.148505520854727, -9.194632392478356, -4.436036387594894},
    {10.427508642579134, 0.0, 0.0, 0.0, 0.0, 242.28349177525817, 165.20045171727028, -374.5467547226902, -22.113666853125306, 7.733432668472264, -30.674084731089398, -9.332130526430229, 15.697238121770845, -31.139403219565178, -9.35292435884448, 35.81684148639408},
    {19.985053242002433, 0.0, 0.0, 0.0, 0.0, -387.0373087493518, -189.17813819516758, 527.8081592054236, -11.57390253995963, 6.8812326946963, -1.0006050966910838, 0.7777137798053443, -2.778205752353508, -60.19669523126412, 84.32040550667716, 11.99229113618279},
    {-25.69393346270375, 0.0, 0.0, 0.0, 0.0, -154.18974869023643, -231.5293791760455, 357.6391179106141, 93.40532418362432, -37.45832313645163, 104.0996495089623, 29.8402934266605, -43.53345659001114, 96.32455395918828, -39.17726167561544, -149.72683625798564},
};

// K is a (kExtendedStages x n) row-major array of stages, K[0] = F(y) on entry. Fills
// K[1..kStages-1] and y_new = y + h * sum_i A[kStages][i] K[i]; does not evaluate F(y_new).
template <class Field>
void step(Field& field, int64_t n, const double* y, double h, double* K, double* y_new, double* work) {
    explicit_step(field, n, y, h, K, y_new, work, kStages, [](int s, int j) { return A[s][j]; });
}

// The RMS norm of the local error relative to atol + rtol * max(|y|, |y_new|), combining the
// 5th- and 3rd-order estimates as DOP853 does (a value below 1 accepts the step).
inline double error_norm(int64_t n, const double* K, double h, const double* y, const double* y_new,
                         double rtol, double atol) {
    double err5 = 0, err3 = 0;
    for (int64_t i = 0; i < n; ++i) {
        double e5 = 0, e3 = 0;
        for (int j = 0; j < kStages; ++j) {
            e5 += E5[j] * K[j * n + i];
            e3 += E3[j] * K[j * n + i];
        }
        const double scale = atol + rtol * std::max(std::fabs(y[i]), std::fabs(y_new[i]));
        e5 /= scale;
        e3 /= scale;
        err5 += e5 * e5;
        err3 += e3 * e3;
    }
    if (err5 == 0 && err3 == 0) return 0;
    return std::fabs(h) * err5 / std::sqrt((err5 + 0.01 * err3) * double(n));
}

// The interpolant on [t, t + h] in powers of x = (t' - t) / h (runge_kutta.hpp), given
// K[kStages] = F(y_new): evaluates the three extra stages into K[kStages+1..]. DOP853 writes it
// as y + x (F0 + (1-x) (F1 + x (F2 + (1-x) (F3 + x (F4 + (1-x) (F5 + x F6)))))); kPowers[r] holds
// the coefficients of the polynomial that multiplies F_r.
template <class Field>
void dense_coefficients(Field& field, int64_t n, const double* y, const double* y_new, double h, double* K,
                        double* coefficients, double* work) {
    static const auto kPowers = [] {
        std::array<std::array<double, 8>, 7> powers{};
        std::array<double, 8> factor{};  // x, x(1-x), x^2(1-x), ... built up one factor at a time
        factor[1] = 1;
        for (int r = 0; r < 7; ++r) {
            powers[r] = factor;
            std::array<double, 8> next{};
            for (int k = 0; k < 7; ++k) {  // times x (r odd) or (1 - x) (r even)
                if (r % 2 == 1) next[k + 1] += factor[k];
                else {
                    next[k] += factor[k];
                    next[k + 1] -= factor[k];
                }
            }
            factor = next;
        }
        return powers;
    }();
    for (int s = kStages + 1; s < kExtendedStages; ++s) {
        for (int64_t i = 0; i < n; ++i) {
            double sum = 0;
            for (int j = 0; j < s; ++j) sum += A[s][j] * K[j * n + i];
            work[i] = y[i] + h * sum;
        }
        field(work, K + s * n);
    }
    for (int64_t i = 0; i < n; ++i) {
        double F[7];
        const double dy = y_new[i] - y[i];
        F[0] = dy;
        F[1] = h * K[i] - dy;
        F[2] = 2 * dy - h * (K[kStages * n + i] + K[i]);
        for (int r = 0; r < 4; ++r) {
            double sum = 0;
            for (int j = 0; j < kExtendedStages; ++j) sum += D[r][j] * K[j * n + i];
            F[3 + r] = h * sum;
        }
        coefficients[i] = y[i];
        for (int k = 1; k < 8; ++k) {
            double c = 0;
            for (int r = 0; r < 7; ++r) c += kPowers[r][k] * F[r];
            coefficients[k * n + i] = c;
        }
    }
}

// Hairer's starting step (Solving ODEs I, §II.4), as SciPy's select_initial_step; costs one F.
template <class Field>
double initial_step(Field& field, int64_t n, const double* y, const double* f, double span, double rtol,
                    double atol, double* work, double* f1, int error_order = kErrorOrder) {
    double d0 = 0, d1 = 0;
    for (int64_t i = 0; i < n; ++i) {
        const double scale = atol + std::fabs(y[i]) * rtol;
        d0 += (y[i] / scale) * (y[i] / scale);
        d1 += (f[i] / scale) * (f[i] / scale);
    }
    d0 = std::sqrt(d0 / double(n));
    d1 = std::sqrt(d1 / double(n));
    const double h0 = std::min(d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : 0.01 * d0 / d1, span);
    for (int64_t i = 0; i < n; ++i) work[i] = y[i] + h0 * f[i];
    field(work, f1);
    double d2 = 0;
    for (int64_t i = 0; i < n; ++i) {
        const double scale = atol + std::fabs(y[i]) * rtol;
        d2 += ((f1[i] - f[i]) / scale) * ((f1[i] - f[i]) / scale);
    }
    d2 = std::sqrt(d2 / double(n)) / h0;
    const double h1 = d1 <= 1e-15 && d2 <= 1e-15 ? std::max(1e-6, h0 * 1e-3)
                                                 : std::pow(0.01 / std::max(d1, d2), 1.0 / (error_order + 1));
    return std::min({100 * h0, h1, span});
}

}  // namespace dop853
}  // namespace flow
}  // namespace gengrad
