// The Runge-Kutta loop of the flow (flow.hpp): Dormand-Prince 8(5,3) steps with error control
// in rtol/atol, the standard step-size controller (safety 0.9, factors in [0.2, 10], no growth
// right after a rejection) and Hairer's starting step; after each accepted step the scan for
// events (events.cpp) and, where there is one, the new pattern (resolve.cpp). Also the output
// and the ensembles of flows.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>

#include "flow/dop853.hpp"
#include "flow/dopri5.hpp"
#include "flow/integrator.hpp"
#include "gengrad/parallel.hpp"

namespace gengrad {
namespace flow {

namespace {
constexpr double kInf = std::numeric_limits<double>::infinity();
}  // namespace

Integrator::Integrator(const NetSpec& spec, const double* theta0, const Batch<double>& data, const Options& options,
                       const std::function<bool()>& interrupted)
    : options_(options),
      interrupted_(interrupted),
      field_(spec, data),
      sliding_(field_),
      units_(field_.units()),
      d_(field_.dim()),
      switches_(field_.switches()),
      theta_(theta0, theta0 + d_),
      f_(d_),
      z_(units_.size()),
      g_(units_.size()),
      grad_(d_),
      y_new_(d_),
      z_new_(units_.size()),
      g_new_(units_.size()),
      work_(d_),
      K_(dop853::kExtendedStages * d_),
      coefficients_(kDenseRows * d_),
      node_theta_(d_),
      band_(std::min(1e-4, std::max(1e-6, 100 * options.rtol))) {
    result_.dim = d_;
}

// The drift below which a sliding unit counts as staying on its surface (SlidingSet::set_drift):
// the local error tolerance of the state per step.
void Integrator::update_drift() {
    double largest = 0;
    for (double v : theta_) largest = std::max(largest, std::fabs(v));
    sliding_.set_drift((options_.atol + options_.rtol * largest) / h_step_);
}

double Integrator::field(const double* theta, double* F, double* z, double* g) {
    const double risk = field_.gradient(theta, grad_.data(), z, g);
    for (int64_t i = 0; i < d_; ++i) F[i] = -grad_[i];
    if (!sliding_.empty() && !sliding_.project(theta, F))
        fail("the normals of the sliding surfaces became linearly dependent");
    return risk;
}

void Integrator::evaluate_current() {
    risk_ = field(theta_.data(), f_.data(), switches_ ? z_.data() : nullptr, switches_ ? g_.data() : nullptr);
    alphas_.clear();
    if (!sliding_.empty()) {
        alphas_ = sliding_.alphas(theta_.data(), g_.data());
        if (!sliding_.alphas_determined())
            fail("the Filippov weights of sliding surfaces coupled across layers have no solution at t = " +
                 number(t_));
    }
}

// How far alpha is inside [0, 1] (negative outside).
double Integrator::margin(double alpha) const {
    const double inside = std::min(alpha, 1 - alpha);
    return std::isnan(inside) ? -kInf : inside;
}

double Integrator::band(size_t s) const { return sliding_[s].hysteresis * band_; }

Result Integrator::run() {
    if (switches_) {
        initial_pattern();
        evaluate_current();
        resolve(0, StepEvent{});
        starting_ = false;
        const Pattern& pattern = field_.pattern();
        result_.initial_pieces.resize(units_.M * units_.rows);
        for (int64_t m = 0; m < units_.M; ++m)
            for (int64_t r = 0; r < units_.rows; ++r) {
                const int64_t u = r * units_.ld + m;
                result_.initial_pieces[m * units_.rows + r] = int8_t(pattern.sliding(u) ? -1 : pattern.piece(u));
            }
    } else {
        evaluate_current();
    }
    if (result_.success) check_invariants(0);
    record(0);
    emit_until(0);
    const double t_end = options_.t_end;
    auto rhs = [this](const double* y, double* F) { field(y, F); };
    double h = 0;
    low_order_ = options_.method == Method::dopri5;
    if (t_end > 0 && result_.success)
        h = options_.first_step > 0
                ? options_.first_step
                : dop853::initial_step(rhs, d_, theta_.data(), f_.data(), t_end, options_.rtol, options_.atol,
                                       work_.data(), y_new_.data(),
                                       low_order_ ? dopri5::kErrorOrder : dop853::kErrorOrder);
    bool rejected = false;
    int64_t iterations = 0;
    auto stationary = [&] {
        double largest = 0;
        for (double v : f_) largest = std::max(largest, std::fabs(v));
        return options_.gtol > 0 && largest <= options_.gtol;
    };
    while (t_ < t_end && result_.success) {
        if (stationary()) {
            result_.stationary = true;
            result_.message = "stationary at t = " + number(t_) + ": every component of the field is at most gtol";
            break;
        }
        if ((++iterations & 63) == 0 && interrupted_ && interrupted_()) {
            fail("interrupted at t = " + number(t_));
            break;
        }
        if (result_.n_steps >= options_.max_steps) {
            fail("max_steps = " + std::to_string(options_.max_steps) + " reached at t = " + number(t_));
            break;
        }
        h = std::min(h, options_.max_step);
        const bool last = t_ + h >= t_end;
        if (last) h = t_end - t_;
        if (!(h > 10 * (std::nextafter(t_, kInf) - t_))) {
            fail("the step size fell below the resolution of t at t = " + number(t_));
            break;
        }
        std::copy(f_.begin(), f_.end(), K_.begin());
        const bool low = low_order_;
        const double exponent = -1.0 / ((low ? dopri5::kErrorOrder : dop853::kErrorOrder) + 1);
        double* f_new = K_.data() + (low ? dopri5::kStages : dop853::kStages) * d_;
        double risk_new = 0, error;
        auto end_field = [&] {
            risk_new = field(y_new_.data(), f_new, switches_ ? z_new_.data() : nullptr,
                             switches_ ? g_new_.data() : nullptr);
        };
        if (low) {  // its error estimate needs F(y_new)
            dopri5::step(rhs, d_, theta_.data(), h, K_.data(), y_new_.data(), work_.data());
            end_field();
            error = dopri5::error_norm(d_, K_.data(), h, theta_.data(), y_new_.data(), options_.rtol, options_.atol);
        } else {
            dop853::step(rhs, d_, theta_.data(), h, K_.data(), y_new_.data(), work_.data());
            error = dop853::error_norm(d_, K_.data(), h, theta_.data(), y_new_.data(), options_.rtol, options_.atol);
        }
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
        t_step_ = t_;
        h_step_ = h;
        update_drift();
        t_stop_ = last ? t_end : t_ + h;
        f_new_ = f_new;
        if (!low) end_field();
        std::vector<double> alphas_new;
        if (!sliding_.empty()) alphas_new = sliding_.alphas(y_new_.data(), g_new_.data());
        const bool wants_eval = next_eval_ < options_.t_eval.size() && options_.t_eval[next_eval_] <= t_stop_;
        if (low)
            dopri5::dense_coefficients(d_, theta_.data(), h, K_.data(), coefficients_.data());
        else if (switches_ || options_.dense_output || wants_eval)
            dop853::dense_coefficients(rhs, d_, theta_.data(), y_new_.data(), h, K_.data(), coefficients_.data(),
                                       work_.data());
        ++result_.n_steps;
        if (!result_.success) break;
        node_alphas_ = alphas_new;  // the scan reads the step end's alphas here
        const StepEvent event = switches_ ? scan_step() : StepEvent{};
        if (!result_.success) break;
        choose_method(event.found);
        if (!event.found) {
            emit_until(t_stop_);
            t_ = t_stop_;
            std::swap(theta_, y_new_);
            std::copy(f_new, f_new + d_, f_.begin());
            std::swap(z_, z_new_);
            std::swap(g_, g_new_);
            risk_ = risk_new;
            alphas_ = alphas_new;
            stalled_ = 0;
            std::swap(start_dz_, end_dz_);
            start_dz_valid_ = switches_ && sliding_.empty();
            if (!sliding_.empty()) {
                if (!sliding_.project_state(theta_.data())) fail("the state could not be projected onto the sliding surfaces at t = " + number(t_));
                evaluate_current();
            }
            if (switches_ && result_.success) resolve(t_, StepEvent{});  // units that reached a boundary
        } else {
            emit_until(event.t);
            state_at(event.t, theta_.data());  // at the step's start (a departure): theta_ itself
            stalled_ = event.t - t_ <= 4 * std::numeric_limits<double>::epsilon() * std::fabs(event.t) ? stalled_ + 1 : 0;
            t_ = event.t;
            if (stalled_ > 1000) {
                fail("events accumulate at t = " + number(t_) + " (1000 events without progress in t)");
                break;
            }
            start_dz_valid_ = false;
            resolve(t_, event);
        }
        if (result_.success) check_invariants(t_);
        record(t_);
        h = h_next;
    }
    result_.t_final = t_;
    if (result_.stationary) {  // the state at every later requested time
        while (next_eval_ < options_.t_eval.size()) {
            result_.eval_theta.insert(result_.eval_theta.end(), theta_.begin(), theta_.end());
            result_.eval_risk.push_back(risk_);
            ++next_eval_;
        }
    }
    result_.final_theta = theta_;
    result_.final_risk = risk_;
    result_.n_gradient = field_.n_gradient;
    result_.n_forward = field_.n_forward;
    result_.n_tangent = field_.n_tangent;
    result_.n_unit = field_.n_unit;
    return std::move(result_);
}

// With method auto: DOPRI5 (six evaluations a step) once events have ended three steps in a row,
// DOP853 (fifteen, and order 8) once five steps in a row have run their full length. Where
// events come faster than the tolerance would let steps grow, a step's cost is what counts;
// elsewhere the order.
void Integrator::choose_method(bool event) {
    if (options_.method != Method::automatic || !switches_) return;
    event_steps_ = event ? event_steps_ + 1 : 0;
    free_steps_ = event ? 0 : free_steps_ + 1;
    if (!low_order_ && event_steps_ >= 3) low_order_ = true;
    if (low_order_ && free_steps_ >= 5) low_order_ = false;
}

// ---- output ----------------------------------------------------------------------------------

void Integrator::record(double t) {
    if (!options_.save_steps) return;
    result_.t.push_back(t);
    result_.theta.insert(result_.theta.end(), theta_.begin(), theta_.end());
    result_.risk.push_back(risk_);
}

// The requested states up to t_to: at t = 0 the initial state, later the current step's
// interpolant (kept too with dense_output).
void Integrator::emit_until(double t_to) {
    while (next_eval_ < options_.t_eval.size() && options_.t_eval[next_eval_] <= t_to) {
        const double t = options_.t_eval[next_eval_++];
        if (t_to == 0) {
            std::copy(theta_.begin(), theta_.end(), work_.begin());
        } else {
            state_at(t, work_.data());
        }
        result_.eval_theta.insert(result_.eval_theta.end(), work_.begin(), work_.end());
        result_.eval_risk.push_back(field_.risk(work_.data()));
    }
    if (options_.dense_output && t_to > 0) {
        result_.dense_t.push_back(t_step_);
        result_.dense_h.push_back(h_step_);
        result_.dense_stop.push_back(t_to);
        result_.dense_coefficients.insert(result_.dense_coefficients.end(), coefficients_.begin(), coefficients_.end());
    }
}

bool Integrator::fail(const std::string& message) {
    if (result_.success) {  // the first reason is the one to report
        result_.success = false;
        result_.message = message;
    }
    return false;
}

// ---- entry points ----------------------------------------------------------------------------

namespace {

void check_options(const Options& o) {
    auto positive = [](double v, const char* name) {
        if (!(v > 0 && std::isfinite(v)))
            throw std::invalid_argument(std::string(name) + " must be a positive finite number, got " + number(v));
    };
    if (!(o.t_end >= 0 && std::isfinite(o.t_end)))
        throw std::invalid_argument("t_end must be a finite number >= 0, got " + number(o.t_end));
    positive(o.rtol, "rtol");
    positive(o.atol, "atol");
    if (o.rtol < 100 * std::numeric_limits<double>::epsilon())
        throw std::invalid_argument("rtol must be at least 100 * machine epsilon (2.2e-14)");
    if (!(o.first_step >= 0) || !std::isfinite(o.first_step))
        throw std::invalid_argument("first_step must be 0 (automatic) or a positive finite number");
    if (!(o.max_step > 0)) throw std::invalid_argument("max_step must be positive");
    if (o.max_steps < 1) throw std::invalid_argument("max_steps must be at least 1");
    if (o.event_nodes < 1 || o.event_nodes > 64) throw std::invalid_argument("event_nodes must lie in [1, 64]");
    if (!(o.gtol >= 0 && std::isfinite(o.gtol))) throw std::invalid_argument("gtol must be a finite number >= 0");
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

std::vector<Result> integrate_ensemble(const NetSpec& spec, const double* thetas0, int64_t n,
                                       const EnsembleBatch<double>& data, const Options& options,
                                       const std::function<bool()>& interrupted) {
    check_options(options);
    const int64_t d = NetworkField(spec, {data.X, data.Y, data.weight, data.M}).dim();
    std::vector<Result> results(n);
    std::atomic<bool> stop{false};
    // Only the calling thread may ask (the callback may need Python's lock); the flows on other
    // threads read the answer.
    const std::thread::id caller = std::this_thread::get_id();
    const std::function<bool()> poll = [&] {
        if (std::this_thread::get_id() == caller && interrupted && interrupted()) stop = true;
        return stop.load();
    };
    // The caller keeps asking while it waits for the helpers' last flows (it has none left).
    parallel_for(
        n, call_threads(),
        [&](int64_t i, int) {
            const Batch<double> batch{data.X + i * data.x_stride, data.Y + i * data.y_stride,
                                      data.weight ? data.weight + i * data.weight_stride : nullptr, data.M};
            Integrator integrator(spec, thetas0 + i * d, batch, options, poll);
            results[i] = integrator.run();
        },
        poll);
    return results;
}

}  // namespace flow
}  // namespace gengrad
