// Microbenchmarks of the kernels (Google Benchmark): one risk-and-gradient evaluation per
// iteration, for each kernel build the CPU supports, float32 and float64.
//   cmake -S . -B build/bench -DGENGRAD_BENCH=ON ... && ninja -C build/bench gengrad_bench
//   build/bench/gengrad_bench --benchmark_filter=avx2
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "gengrad/dispatch.hpp"
#include "gengrad/layout.hpp"

namespace {

using gengrad::portable::parameter_dim;

struct Case {
    std::vector<int64_t> widths;
    int64_t M;
};

const std::vector<Case> kCases = {
    {{1, 16, 16, 1}, 256}, {{8, 32, 32, 1}, 1024}, {{64, 128, 128, 10}, 256},
    {{64, 256, 256, 256, 10}, 1024}, {{784, 512, 512, 10}, 1024},
};

gengrad::NetSpec relu_net(const std::vector<int64_t>& widths) {
    gengrad::NetSpec spec{};
    spec.widths = widths.data();
    spec.n_layers = int64_t(widths.size()) - 1;
    spec.activation = gengrad::ActivationKind::piecewise_linear;
    spec.pwl = {{0.0, 0.0}, {0.0, 1.0, 1.0}, 0.0, 1, {false, false}};
    spec.loss = gengrad::LossKind::squared_error;
    return spec;
}

template <class T>
void risk_gradient(benchmark::State& state, const Case& c, const std::string& isa) {
    const gengrad::IsaKernels& kernels = gengrad::select_kernels(isa);
    const auto& table = [&]() -> const gengrad::KernelTable<T>& {
        if constexpr (sizeof(T) == 4) return kernels.f32;
        else return kernels.f64;
    }();
    const gengrad::NetSpec spec = relu_net(c.widths);
    const int64_t d = parameter_dim(c.widths.data(), spec.n_layers);
    std::mt19937_64 rng(0);
    std::normal_distribution<double> normal(0.0, 0.3);
    auto random = [&](int64_t n) {
        std::vector<T> v(static_cast<size_t>(n));
        for (T& x : v) x = T(normal(rng));
        return v;
    };
    const std::vector<T> theta = random(d), X = random(c.M * c.widths.front()), Y = random(c.M * c.widths.back());
    std::vector<T> grad(static_cast<size_t>(d));
    const gengrad::Batch<T> batch{X.data(), Y.data(), nullptr, c.M};
    for (auto _ : state) {
        double risk = table.risk_gradient(spec, {gengrad::Family::exact, 0.0}, theta.data(), batch, grad.data());
        benchmark::DoNotOptimize(risk);
        benchmark::ClobberMemory();
    }
    double multiply_adds = 0;
    for (size_t k = 1; k < c.widths.size(); ++k) multiply_adds += double(c.widths[k]) * double(c.widths[k - 1]);
    state.counters["GFLOP/s"] = benchmark::Counter(6 * multiply_adds * double(c.M) * 1e-9,
                                                   benchmark::Counter::kIsIterationInvariantRate);
}

std::string name(const Case& c) {
    std::string text;
    for (int64_t w : c.widths) text += (text.empty() ? "" : "-") + std::to_string(w);
    return text + "@" + std::to_string(c.M);
}

}  // namespace

int main(int argc, char** argv) {
    for (const std::string& isa : gengrad::supported_isas())
        for (const Case& c : kCases) {
            benchmark::RegisterBenchmark(("f32/" + isa + "/" + name(c)).c_str(),
                                         [c, isa](benchmark::State& s) { risk_gradient<float>(s, c, isa); })
                ->UseRealTime();
            benchmark::RegisterBenchmark(("f64/" + isa + "/" + name(c)).c_str(),
                                         [c, isa](benchmark::State& s) { risk_gradient<double>(s, c, isa); })
                ->UseRealTime();
        }
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
