// C++ tests of the kernel table, without Python: gradients against central finite differences,
// every kernel build against every other, ensembles against single networks and one thread
// against two. Odd sizes (M = 1, 7, 33, 130, widths 1 and 70) exercise partial tiles and
// blocks, which is what the sanitizer build (GENGRAD_SANITIZE, .ci/sanitizers) is for.
//   cmake -S . -B build/test -DGENGRAD_TESTS=ON ... && ninja -C build/test && ctest --test-dir build/test
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "gengrad/checks.hpp"
#include "gengrad/dispatch.hpp"
#include "gengrad/layout.hpp"
#include "gengrad/parallel.hpp"
#include "../cpu/tiles.hpp"

namespace {

using gengrad::portable::parameter_dim;

int g_failures = 0;

void check(bool ok, const std::string& what) {
    if (!ok) {
        ++g_failures;
        std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    }
}

struct Net {
    std::string name;
    std::vector<int64_t> widths;
    gengrad::NetSpec spec;
};

Net make_net(const std::string& activation, std::vector<int64_t> widths, gengrad::LossKind loss) {
    Net net{activation + "/" + std::to_string(widths.size() - 1) + " layers", std::move(widths), {}};
    gengrad::NetSpec& spec = net.spec;
    spec.n_layers = int64_t(net.widths.size()) - 1;
    spec.loss = loss;
    spec.activation = gengrad::ActivationKind::piecewise_linear;
    if (activation == "relu") spec.pwl = {{0.0, 0.0}, {0.0, 1.0, 1.0}, 0.0, 1, {false, false}};
    else if (activation == "hardtanh") spec.pwl = {{-1.0, 1.0}, {0.0, 1.0, 0.0}, 0.0, 2, {false, false}};
    else spec.activation = gengrad::ActivationKind::tanh;
    return net;
}

// The spec's widths pointer must follow the vector when a Net is copied or moved.
const gengrad::NetSpec& spec_of(Net& net) {
    net.spec.widths = net.widths.data();
    return net.spec;
}

bool supported(const gengrad::IsaKernels& k) {
    const auto names = gengrad::supported_isas();
    return std::find(names.begin(), names.end(), std::string(k.isa)) != names.end();
}

template <class T>
const gengrad::KernelTable<T>& table(const gengrad::IsaKernels& k) {
    if constexpr (sizeof(T) == 4) return k.f32;
    else return k.f64;
}

struct Problem {
    std::vector<double> theta, X, Y;
    int64_t M;
};

Problem random_problem(const Net& net, int64_t M, unsigned seed, bool integer_valued) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal(0.0, 0.7);
    std::uniform_int_distribution<int> small(-2, 2);
    auto draw = [&](int64_t n) {
        std::vector<double> v(static_cast<size_t>(n));
        for (double& x : v) x = integer_valued ? double(small(rng)) : normal(rng);
        return v;
    };
    const int64_t d = parameter_dim(net.widths.data(), int64_t(net.widths.size()) - 1);
    Problem p{draw(d), draw(M * net.widths.front()), draw(M * net.widths.back()), M};
    if (net.spec.loss == gengrad::LossKind::cross_entropy)
        for (double& y : p.Y) y = std::fabs(y);  // target masses
    return p;
}

template <class T>
std::vector<T> cast(const std::vector<double>& v) {
    return std::vector<T>(v.begin(), v.end());
}

double relative_distance(const std::vector<double>& a, const std::vector<double>& b) {
    double diff = 0, norm = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        diff += (a[i] - b[i]) * (a[i] - b[i]);
        norm += b[i] * b[i];
    }
    return std::sqrt(diff) / std::max(std::sqrt(norm), 1e-300);
}

double risk_gradient(const gengrad::IsaKernels& k, Net& net, const Problem& p, std::vector<double>* grad) {
    const gengrad::Batch<double> batch{p.X.data(), p.Y.data(), nullptr, p.M};
    if (grad) grad->assign(p.theta.size(), 0.0);
    return table<double>(k).risk_gradient(spec_of(net), {gengrad::Family::exact, 0.0}, p.theta.data(), batch,
                                          grad ? grad->data() : nullptr);
}

void test_finite_differences(Net& net, int64_t M) {
    Problem p = random_problem(net, M, 11, false);
    for (const gengrad::IsaKernels* k : gengrad::all_kernels()) {
        if (!supported(*k)) continue;
        std::vector<double> G;
        risk_gradient(*k, net, p, &G);
        std::vector<double> fd(G.size());
        for (size_t i = 0; i < G.size(); ++i) {
            const double saved = p.theta[i], h = 1e-6 * std::max(1.0, std::fabs(saved));
            p.theta[i] = saved + h;
            const double up = risk_gradient(*k, net, p, nullptr);
            p.theta[i] = saved - h;
            const double down = risk_gradient(*k, net, p, nullptr);
            p.theta[i] = saved;
            fd[i] = (up - down) / (2 * h);
        }
        const double error = relative_distance(G, fd);
        check(error < 1e-6, std::string(k->isa) + " " + net.name + " M=" + std::to_string(M) +
                                ": gradient vs finite differences, relative error " + std::to_string(error));
    }
}

// Every build agrees with the first (sse2) to 1e-12 in float64 and 1e-5 in float32, and the
// kink counts agree exactly on integer-valued inputs.
void test_builds_agree(Net& net, int64_t M, bool integer_valued) {
    const Problem p = random_problem(net, M, 5, integer_valued);
    const auto builds = gengrad::all_kernels();
    std::vector<double> G0;
    const double risk0 = risk_gradient(*builds.front(), net, p, &G0);
    const int64_t hidden = int64_t(net.widths.size()) - 2;
    std::vector<int64_t> counts0(static_cast<size_t>(hidden) + 1), counts(counts0.size());
    table<double>(*builds.front()).kink_counts(spec_of(net), p.theta.data(), p.X.data(), M, counts0.data());
    for (const gengrad::IsaKernels* k : builds) {
        if (!supported(*k)) continue;
        const std::string where = std::string(k->isa) + " " + net.name + " M=" + std::to_string(M);
        std::vector<double> G;
        const double risk = risk_gradient(*k, net, p, &G);
        check(std::fabs(risk - risk0) <= 1e-12 * std::max(1.0, std::fabs(risk0)), where + ": risk differs from sse2");
        check(relative_distance(G, G0) <= 1e-12, where + ": float64 gradient differs from sse2");
        table<double>(*k).kink_counts(spec_of(net), p.theta.data(), p.X.data(), M, counts.data());
        check(std::equal(counts0.begin(), counts0.begin() + hidden, counts.begin()), where + ": kink counts differ");

        const auto theta = cast<float>(p.theta), X = cast<float>(p.X), Y = cast<float>(p.Y);
        std::vector<float> G32(G.size());
        const gengrad::Batch<float> batch{X.data(), Y.data(), nullptr, M};
        table<float>(*k).risk_gradient(spec_of(net), {gengrad::Family::exact, 0.0}, theta.data(), batch, G32.data());
        if (!integer_valued)  // at kinks float32 rounding may move a pre-activation off the kink
            check(relative_distance(std::vector<double>(G32.begin(), G32.end()), G0) <= 1e-4,
                  where + ": float32 gradient far from float64");
    }
}

void test_ensemble_and_threads(Net& net, int64_t M) {
    const gengrad::IsaKernels& k = gengrad::select_kernels("auto");
    const int64_t n = 3;
    std::vector<Problem> problems;
    std::vector<double> thetas;
    for (int64_t i = 0; i < n; ++i) {
        problems.push_back(random_problem(net, M, 100 + unsigned(i), i == 1));
        problems[i].X = problems[0].X;
        problems[i].Y = problems[0].Y;
        thetas.insert(thetas.end(), problems[i].theta.begin(), problems[i].theta.end());
    }
    const size_t d = problems[0].theta.size();
    std::vector<double> risks(static_cast<size_t>(n)), grads(n * d);
    const gengrad::EnsembleBatch<double> batch{problems[0].X.data(), problems[0].Y.data(), nullptr, M, 0, 0, 0};
    table<double>(k).ensemble_risk_gradient(spec_of(net), {gengrad::Family::exact, 0.0}, thetas.data(), n, batch,
                                            risks.data(), grads.data());
    const int threads = gengrad::num_threads();
    for (int t : {1, 2}) {
        gengrad::set_num_threads(t);
        for (int64_t i = 0; i < n; ++i) {
            std::vector<double> G;
            const double risk = risk_gradient(k, net, problems[i], &G);
            const std::string where = net.name + " M=" + std::to_string(M) + " threads=" + std::to_string(t);
            check(risk == risks[i] && std::equal(G.begin(), G.end(), grads.begin() + i * d),
                  where + ": ensemble member " + std::to_string(i) + " differs from the single network");
        }
    }
    gengrad::set_num_threads(threads);
}

// The gradient flow's kernels on a random frozen pattern (an affine map per unit and sample):
// the gradient, the directional derivatives of the hidden pre-activations and the gradient of one
// pre-activation against central finite differences, and the pre-activations that the gradient
// and the forward pass write against each other.
void test_frozen(Net& net, int64_t M) {
    const Problem p = random_problem(net, M, 21, false);
    const gengrad::NetSpec& spec = spec_of(net);
    const int64_t L = spec.n_layers, d = int64_t(p.theta.size());
    if (L < 2 || net.spec.activation != gengrad::ActivationKind::piecewise_linear) return;
    int64_t rows = 0;
    for (int64_t k = 1; k < L; ++k) rows += net.widths[k];
    const int64_t ld = M + 64;
    std::mt19937_64 rng(3);
    std::uniform_real_distribution<double> uniform(-1.0, 1.5);
    std::vector<double> slope(rows * ld), intercept(rows * ld), direction(d);
    for (double& v : slope) v = uniform(rng);
    for (double& v : intercept) v = uniform(rng);
    for (double& v : direction) v = uniform(rng);
    const gengrad::FrozenPattern<double> pattern{slope.data(), intercept.data(), ld};
    for (const gengrad::IsaKernels* k : gengrad::all_kernels()) {
        if (!supported(*k)) continue;
        const auto& t = table<double>(*k);
        const std::string where = std::string(k->isa) + " " + net.name + " M=" + std::to_string(M) + " frozen";
        std::vector<double> theta = p.theta, G(d), Z(rows * ld), G_z(rows * ld), dZ(rows * ld), up(rows * ld),
            down(rows * ld);
        const gengrad::Batch<double> batch{p.X.data(), p.Y.data(), nullptr, M};
        t.frozen_risk_gradient(spec, theta.data(), batch, pattern, G.data(), G_z.data(), nullptr);
        t.frozen_hidden(spec, theta.data(), direction.data(), p.X.data(), M, pattern, Z.data(), dZ.data());
        bool same = true;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t m = 0; m < M; ++m) same = same && Z[r * ld + m] == G_z[r * ld + m];
        check(same, where + ": the gradient's and the forward pass's pre-activations differ");
        std::vector<double> fd(d);
        for (int64_t i = 0; i < d; ++i) {
            const double saved = theta[i], h = 1e-6 * std::max(1.0, std::fabs(saved));
            theta[i] = saved + h;
            const double r_up = t.frozen_risk_gradient(spec, theta.data(), batch, pattern, nullptr, nullptr, nullptr);
            theta[i] = saved - h;
            const double r_down = t.frozen_risk_gradient(spec, theta.data(), batch, pattern, nullptr, nullptr, nullptr);
            theta[i] = saved;
            fd[i] = (r_up - r_down) / (2 * h);
        }
        check(relative_distance(G, fd) < 1e-6, where + ": gradient vs finite differences");
        const double h = 1e-6;
        std::vector<double> shifted(theta);
        for (int64_t i = 0; i < d; ++i) shifted[i] = theta[i] + h * direction[i];
        t.frozen_hidden(spec, shifted.data(), nullptr, p.X.data(), M, pattern, up.data(), nullptr);
        for (int64_t i = 0; i < d; ++i) shifted[i] = theta[i] - h * direction[i];
        t.frozen_hidden(spec, shifted.data(), nullptr, p.X.data(), M, pattern, down.data(), nullptr);
        std::vector<double> tangent, expected;
        for (int64_t r = 0; r < rows; ++r)
            for (int64_t m = 0; m < M; ++m) {
                tangent.push_back(dZ[r * ld + m]);
                expected.push_back((up[r * ld + m] - down[r * ld + m]) / (2 * h));
            }
        check(relative_distance(tangent, expected) < 1e-6, where + ": directional derivatives vs finite differences");
        // The gradient of the last sample's last hidden unit of every layer.
        for (int64_t layer = 1, first = 0; layer < L; first += net.widths[layer], ++layer) {
            const int64_t j = net.widths[layer] - 1, m = M - 1, row = first + j;
            std::vector<double> normal(d, 0.0);
            const gengrad::FrozenPattern<double> column{slope.data() + m, intercept.data() + m, ld};
            t.frozen_unit_gradient(spec, theta.data(), p.X.data() + m * net.widths[0], column, layer, j, normal.data());
            std::vector<double> fd_normal(d, 0.0);
            for (int64_t i = 0; i < d; ++i) {
                const double saved = theta[i], step = 1e-6 * std::max(1.0, std::fabs(saved));
                theta[i] = saved + step;
                t.frozen_hidden(spec, theta.data(), nullptr, p.X.data(), M, pattern, up.data(), nullptr);
                theta[i] = saved - step;
                t.frozen_hidden(spec, theta.data(), nullptr, p.X.data(), M, pattern, down.data(), nullptr);
                theta[i] = saved;
                fd_normal[i] = (up[row * ld + m] - down[row * ld + m]) / (2 * step);
            }
            check(relative_distance(normal, fd_normal) < 1e-6,
                  where + ": gradient of a layer-" + std::to_string(layer) + " pre-activation vs finite differences");
        }
    }
}

// Three threads compute gradients of several blocks of samples while a fourth sets the thread
// count 1..8 as fast as it can: every result is bitwise the one-thread result (a call reads the
// count once; it used to re-read it per block and overrun scratch sized by the first read).
void test_counts_changed_during_calls(Net& net) {
    const gengrad::IsaKernels& k = gengrad::select_kernels("auto");
    const Problem p = random_problem(net, 20000, 5, true);
    const int threads = gengrad::num_threads();
    gengrad::set_num_threads(1);
    std::vector<double> expected;
    const double expected_risk = risk_gradient(k, net, p, &expected);
    std::atomic<bool> stop{false};
    std::atomic<int> wrong{0};
    std::thread changer([&] {
        for (int n = 0; !stop; ++n) gengrad::set_num_threads(n % 8 + 1);
    });
    std::vector<std::thread> callers;
    for (int c = 0; c < 3; ++c)
        callers.emplace_back([&, mine = net]() mutable {  // spec_of writes into the Net
            for (int i = 0; i < 4; ++i) {
                std::vector<double> G;
                if (risk_gradient(k, mine, p, &G) != expected_risk || G != expected) ++wrong;
            }
        });
    for (std::thread& caller : callers) caller.join();
    stop = true;
    changer.join();
    gengrad::set_num_threads(threads);
    check(wrong == 0, net.name + ": " + std::to_string(wrong.load()) + " of 12 results changed with the thread count");
}

// The runtime itself: every task runs once, worker slots stay below min(threads, tasks), loops
// inside the tasks of a loop on several threads run on their thread, and the first exception of
// a task reaches the caller.
void test_parallel_for() {
    for (int threads : {1, 2, 3, 8}) {
        const int64_t n = 1000;
        std::vector<std::atomic<int>> runs(n);
        std::atomic<int> bad_slot{0}, inner_total{0};
        gengrad::parallel_for(n, threads, [&](int64_t task, int worker) {
            ++runs[size_t(task)];
            if (worker < 0 || worker >= threads) ++bad_slot;
            gengrad::parallel_for(3, gengrad::call_threads(), [&](int64_t, int inner) {
                if (threads > 1 && inner != 0) ++bad_slot;  // one thread: the inner loop may use the pool
                ++inner_total;
            });
        });
        check(std::all_of(runs.begin(), runs.end(), [](const std::atomic<int>& r) { return r == 1; }),
              "parallel_for: a task ran other than once");
        check(bad_slot == 0 && inner_total == 3 * n, "parallel_for: worker slots or nested loops wrong");
        bool rethrown = false;
        try {
            gengrad::parallel_for(n, threads, [&](int64_t task, int) {
                if (task == 17) throw std::runtime_error("task 17");
            });
        } catch (const std::runtime_error& e) {
            rethrown = std::string(e.what()) == "task 17";
        }
        check(rethrown, "parallel_for: a task's exception did not reach the caller");
    }
}

// Helpers started for a job take part in it: each of the tasks waits (up to 10 s) until all
// have begun, which only happens if every thread joined. Helpers used to read the job counter
// after the job that started them had raised it, and sat out that job: a long first job (an
// ensemble of flows) ran on one thread. Run first, while the pool has no helpers.
void test_new_helpers_join_their_first_job() {
    const int threads = 6;
    std::atomic<int> begun{0}, timed_out{0};
    gengrad::parallel_for(threads, threads, [&](int64_t, int) {
        ++begun;
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (begun.load() < threads)
            if (std::chrono::steady_clock::now() > give_up) {
                ++timed_out;
                return;
            }
    });
    check(timed_out == 0, "parallel_for: helpers started for a job did not join it");
}

}  // namespace

// The finiteness check against std::isfinite, value by value: every special value at every
// position of arrays that end inside and at the edges of its vectors and blocks, and finite
// values whose bits come closest to a non-finite pattern (a double's lower word all ones or
// shaped like an exponent, the largest finite values, signed zeros and subnormals).
template <class T, class Bits>
void test_first_non_finite(const std::vector<Bits>& specials, const std::vector<Bits>& finite_edges) {
    const char* type = sizeof(T) == 4 ? "float32" : "float64";
    for (const int64_t n : {1, 2, 3, 5, 1023, 1024, 1025, 2049}) {
        std::vector<T> values(n);
        for (int64_t i = 0; i < n; ++i) {
            const Bits bits = finite_edges[i % finite_edges.size()];
            std::memcpy(&values[i], &bits, sizeof bits);
        }
        bool all_finite = true;
        for (const T v : values) all_finite = all_finite && std::isfinite(v);
        check(all_finite && gengrad::portable::first_non_finite(values.data(), n) == -1,
              std::string(type) + ": a finite edge value counted as non-finite, n=" + std::to_string(n));
        for (const Bits special : specials)
            for (const int64_t at : {int64_t(0), int64_t(1), n / 2, n - 2, n - 1, int64_t(1023), int64_t(1024)}) {
                if (at < 0 || at >= n) continue;
                std::vector<T> bad = values;
                std::memcpy(&bad[at], &special, sizeof special);
                if (at + 1 < n) std::memcpy(&bad[n - 1], &special, sizeof special);  // a later one too
                check(!std::isfinite(bad[at]) && gengrad::portable::first_non_finite(bad.data(), n) == at,
                      std::string(type) + ": non-finite value missed at " + std::to_string(at) + " of " + std::to_string(n));
            }
    }
}

// pack_rows (this file's build of it: 16-byte vectors, so 4 float32 or 2 float64 lanes) against
// its definition, for heights below, at and above the lanes and not multiples of them, output
// strides wider than the panel, rows beyond `valid`: every value written, nothing written
// outside the rows of the panel or after its end. The columns of a panel are also packed as two
// ranges, the later range first: a range's last column must not spill into the next range,
// which another thread may be filling (pack_deltas).
template <class T>
void test_pack_rows() {
    using gengrad::portable::pack_rows;
    const T sentinel = T(-7.5);
    std::mt19937 rng(5);
    for (const int64_t h : {1, 2, 3, 4, 5, 6, 8, 12, 13, 16, 20})
        for (const int64_t K : {1, 3, 4, 5, 8, 17, 33})
            for (const int64_t valid : {h, h - 1, int64_t(0), h + 3})
                for (const bool col_major : {false, true})
                    for (const int64_t extra : {0, 5}) {
                        const int64_t row = col_major ? 1 : K + 3, col = col_major ? h + 2 : 1;
                        std::vector<T> A((h + 3) * (K + 3) + (h + 2) * K);
                        // no zeros in A: a stray lane (a zero row) left in place must show
                        for (T& a : A) a = T(std::uniform_int_distribution<int>(1, 19)(rng));
                        const int64_t out_row = h + extra, guard = 8;  // values before and after the panel
                        std::vector<T> out(K * out_row + 2 * guard, sentinel), expected = out;
                        for (int64_t p = 0; p < K; ++p)
                            for (int64_t r = 0; r < h; ++r)
                                expected[guard + p * out_row + r] = r < valid ? A[r * row + p * col] : T(0);
                        pack_rows(A.data(), row, col, h, valid, K, out.data() + guard, extra ? out_row : 0);
                        const std::string where = std::string(sizeof(T) == 4 ? "float32" : "float64") +
                                                  " h=" + std::to_string(h) + " K=" + std::to_string(K) +
                                                  " valid=" + std::to_string(valid) + " col=" + std::to_string(col) +
                                                  " out_row=" + std::to_string(out_row);
                        check(out == expected, "pack_rows " + where);
                        if (extra || K < 2) continue;
                        std::vector<T> halves(out.size(), sentinel);
                        const int64_t split = K / 2;
                        pack_rows(A.data() + split * col, row, col, h, valid, K - split, halves.data() + guard + split * h);
                        pack_rows(A.data(), row, col, h, valid, split, halves.data() + guard);
                        check(halves == expected, "pack_rows in two ranges " + where);
                    }
}

int main() {
    test_first_non_finite<float, uint32_t>({0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u, 0xffffffffu},
                                           {0x7f7fffffu, 0xff7fffffu, 0u, 0x80000000u, 1u, 0x3f800000u});
    test_first_non_finite<double, uint64_t>(
        {0x7ff0000000000000u, 0xfff0000000000000u, 0x7ff8000000000000u, 0x7ff0000000000001u, 0xffffffffffffffffu},
        {0x7fefffffffffffffu, 0xffefffffffffffffu, 0x00000000ffffffffu, 0x000000007ff00000u, 0x3ff00000ffffffffu,
         0u, 0x8000000000000000u, 1u});
    test_new_helpers_join_their_first_job();
    test_pack_rows<float>();
    test_pack_rows<double>();
    std::vector<Net> nets = {
        make_net("relu", {1, 1}, gengrad::LossKind::squared_error),
        make_net("relu", {2, 5, 1}, gengrad::LossKind::squared_error),
        make_net("relu", {3, 70, 17, 2}, gengrad::LossKind::squared_error),
        make_net("hardtanh", {4, 9, 9, 9, 3}, gengrad::LossKind::cross_entropy),
        make_net("tanh", {2, 16, 1, 16, 2}, gengrad::LossKind::squared_error),
    };
    for (Net& net : nets) {
        for (int64_t M : {1, 7, 33, 130}) {
            test_builds_agree(net, M, false);
            test_builds_agree(net, M, true);
            test_ensemble_and_threads(net, M);
        }
        test_finite_differences(net, 7);
        test_frozen(net, 7);
        test_frozen(net, 70);
    }
    test_builds_agree(nets[2], 20000, true);  // more than one block of samples
    // Layers of >= 64 rows and columns from 256 samples: weight panels, delta panels that the
    // chunks' tasks fill concurrently, the weight gradient as a product.
    Net wide = make_net("relu", {70, 64, 65, 3}, gengrad::LossKind::squared_error);
    for (const bool integer_valued : {false, true}) test_builds_agree(wide, 300, integer_valued);
    for (const char* policy : {"per_worker", "shared"}) {  // a copy of the weight panels per worker, or one
        gengrad::select_weight_panels(policy);
        test_ensemble_and_threads(wide, 300);
    }
    gengrad::select_weight_panels("auto");
    test_counts_changed_during_calls(nets[2]);
    test_parallel_for();
    if (g_failures) {
        std::fprintf(stderr, "%d check(s) failed\n", g_failures);
        return 1;
    }
    std::printf("kernels_test: all checks passed (builds: %zu supported)\n", gengrad::supported_isas().size());
    return 0;
}
