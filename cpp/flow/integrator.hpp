// The state of one gradient flow and the steps that advance it (flow.hpp describes the method).
// The member functions are spread over stepping.cpp (the Runge-Kutta loop and the output),
// events.cpp (finding and locating events in a step) and resolve.cpp (the pattern after an
// event).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "flow/field.hpp"
#include "flow/flow.hpp"
#include "flow/sliding.hpp"

namespace gengrad {
namespace flow {

// A time or value for a message, to full precision.
inline std::string number(double v) {
    char text[32];
    std::snprintf(text, sizeof text, "%.17g", v);
    return text;
}

// A pre-activation this close to a bound of its piece (relative to 1 + |bound|) is on it:
// several times the rounding of a forward pass.
inline double boundary_tolerance(double bound) { return 1e-12 * (1 + std::fabs(bound)); }

// What happens first in an accepted step.
struct StepEvent {
    bool found = false;
    double t = 0;
    std::vector<int64_t> units;          // units leaving their piece...
    std::vector<int8_t> upper;           // ...through its upper (1) or lower (0) bound
    std::vector<size_t> surfaces;        // sliding surfaces whose alpha left [0, 1]...
    std::vector<int8_t> surface_upper;   // ...above 1 (1) or below 0 (0)
};

class Integrator {
public:
    Integrator(const NetSpec& spec, const double* theta0, const Batch<double>& data, const Options& options,
               const std::function<bool()>& interrupted);
    Result run();

private:
    // ---- the field at a state (stepping.cpp) ----
    // F = -G on the current pattern, the tangent part when surfaces slide; returns the risk.
    // z, g: hidden pre-activations and dL/dh there (Units layout), when not null.
    double field(const double* theta, double* F, double* z = nullptr, double* g = nullptr);
    // field() at theta_ into f_, z_, g_, risk_, alphas_.
    void evaluate_current();
    double margin(double alpha) const;  // how far alpha is inside [0, 1]
    double band(size_t s) const;
    void update_drift();

    // Calls f(u, upper, bound) for every finite bound of every unit that does not slide.
    template <class F>
    void for_each_bound(F&& f) const {
        const Pattern& pattern = field_.pattern();
        for (int64_t r = 0; r < units_.rows; ++r)
            for (int64_t m = 0; m < units_.M; ++m) {
                const int64_t u = r * units_.ld + m;
                if (pattern.sliding(u)) continue;
                for (const bool upper : {false, true}) {
                    const double bound = upper ? pattern.upper(u) : pattern.lower(u);
                    if (!std::isinf(bound)) f(u, upper, bound);
                }
            }
    }

    // ---- events in an accepted step (events.cpp) ----
    void state_at(double t, double* out, int64_t n = -1) const;  // the step's interpolant
    StepEvent scan_step();
    void sliding_state_at(double t);
    double gap_at(int64_t u, bool upper, double t);
    double locate_crossing(int64_t u, bool upper, double a, double ga, double b, double gb);
    bool find_inside(int64_t u, bool upper, double a, double b, double& t_inside, double& g_inside);
    double locate_exit(size_t s, double a, double b, double slack);
    double exit_margin(size_t s, double t, double slack);

    // ---- the pattern after an event (resolve.cpp) ----
    void initial_pattern();
    void resolve(double t, const StepEvent& event);
    void touch(int64_t u);
    void start_sliding(int64_t u, int kink);
    bool same_normal(int64_t v, const double* normal);
    void record_changes(double t, const StepEvent& event);
    bool check_invariants(double t);
    double invariant_tolerance(double bound) const;

    // ---- output (stepping.cpp) ----
    void choose_method(bool event);
    void record(double t);
    void emit_until(double t_to);
    bool fail(const std::string& message);

    Options options_;
    const std::function<bool()>& interrupted_;
    NetworkField field_;
    SlidingSet sliding_;
    const Units& units_;
    int64_t d_;
    bool switches_;

    std::vector<double> theta_, f_, z_, g_, grad_, y_new_, z_new_, g_new_, work_, K_, coefficients_;
    std::vector<double> alphas_;  // of the surfaces at theta_
    std::vector<double> dz_;      // normal velocities of all units (resolve)
    std::vector<double> other_normal_;
    double risk_ = 0, t_ = 0;
    // The accepted step being scanned: [t_step_, t_stop_] of nominal size h_step_.
    double t_step_ = 0, h_step_ = 1, t_stop_ = 0;
    std::vector<double> node_z_, node_g_, node_alphas_, node_theta_;
    // dz/dt of every unit at the nodes of the scanned step, at its start (start_dz_valid_:
    // carried over from the previous step's end) and at its end.
    std::vector<double> node_dz_, start_dz_, end_dz_;
    bool start_dz_valid_ = false;
    double* f_new_ = nullptr;  // F at the end of the current step (a row of K_)
    bool low_order_ = false;   // the current step is DOPRI5's (choose_method)
    int64_t event_steps_ = 0, free_steps_ = 0;
    std::vector<int64_t> changed_units_;
    std::vector<int> changed_before_;
    int64_t stalled_ = 0;  // events in a row without progress in t
    bool starting_ = true;  // deciding the pattern at t = 0 (initial_pieces, not events)
    // The units whose piece changed at flipped_time_, and the piece each came from.
    std::unordered_map<int64_t, int> flipped_;
    double flipped_time_ = -1;
    // The units whose sliding ended: the step count then, and the band they had.
    std::unordered_map<int64_t, std::pair<int64_t, double>> recent_exits_;
    // Re-entries of a unit at the widest band; more than kMaxChattering end the flow.
    std::unordered_map<int64_t, int> chattering_;
    static constexpr int kMaxChattering = 10;
    // Chattering widens a surface's band up to this factor: alpha's error is that of the state
    // times alpha's sensitivity, which reached 1e-2 at rtol 1e-6 in deep nets (10^4 rtol).
    static constexpr double kMaxHysteresis = 100;
    // Sliding continues while alpha stays in [-band_, 1 + band_] (band()). Where a one-sided field
    // is nearly tangent to its surface, alpha is near 0 or 1 and the local error of the state
    // moves it by far more than rtol (by 1e-7 at rtol 1e-8 in a deep net whose other one-sided
    // field pushes hard); without the band the flow would leave and re-enter the surface on that
    // noise. Exits are located where alpha reaches 0 or 1. Sliding on while alpha is in the band
    // moves the state by O(band^2) from the flow that left: the field differs by alpha beta n.
    double band_;
    size_t next_eval_ = 0;
    Result result_;
};

}  // namespace flow
}  // namespace gengrad
