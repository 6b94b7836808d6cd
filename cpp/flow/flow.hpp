// The gradient flow theta'(t) = -G(theta(t)) of a network's empirical risk (docs: the gradient
// flow), in float64.
//
// For a piecewise-linear activation the field is smooth (polynomial) on each activation pattern
// and jumps across the switching surfaces {z^k_{m,j}(theta) = kink}. The integrator keeps the
// pattern fixed while it steps, so the Runge-Kutta stages see one smooth field (each unit's
// piece continued past its kinks: frozen.hpp), and restarts the method where the pattern
// changes. The parts, one file each:
//
//  field.hpp     the network on the current pattern through the kernel table: risk, G, hidden
//                pre-activations, their derivatives along a direction, unit normals.
//  pattern.hpp   the piece of every hidden unit (or the kink it slides along).
//  sliding.hpp   Filippov sliding: the field tangent to the sliding surfaces, the weights alpha.
//  events.cpp    finding and locating events in an accepted step.
//  resolve.cpp   deciding, at an event, the pattern the flow continues on.
//  stepping.cpp  the Runge-Kutta steps, step-size control, output; ensembles of flows.
//  dop853.hpp    Dormand-Prince 8(5,3) with its dense output; dopri5.hpp the 5(4) pair, taken while
//                events set the step size; runge_kutta.hpp what the two share.
//
// Invariants, checked and restored after every step and event, or the flow stops with
// success = false and the reason (never a wrong state reported as a success):
//  - every unit that does not slide lies in its piece (to a tolerance of about 1e-12 relative),
//    and every sliding unit on its kink (to a few ulps, after projecting the state);
//  - at every accepted state, no unit on the boundary of its piece moves out of it under the
//    field, and every sliding surface has its alpha in [0, 1] (to a hysteresis band).
// An event is a unit leaving its piece between two dense-output nodes of a step (located by the
// Illinois method to a few ulps in t), a unit on its boundary at the start of a step that leaves
// it (second-order departure: an event at the step start), or a sliding surface whose alpha
// leaves [0, 1] (located where alpha reaches 0 or 1). At an event every unit within the boundary
// tolerance is re-classified with the one-sided fields until the pattern is consistent
// (resolve.cpp): crossing, sliding, the end of sliding, or nothing (a graze).
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "gengrad/contract.hpp"

namespace gengrad {
namespace flow {

enum class Method : int32_t { automatic = 0, dop853 = 1, dopri5 = 2 };

struct Options {
    double t_end = 1;
    double rtol = 1e-8;
    double atol = 1e-10;
    double first_step = 0;  // 0: Hairer's starting step
    double max_step = std::numeric_limits<double>::infinity();
    int64_t max_steps = 1000000;  // accepted steps
    int event_nodes = 3;           // dense-output points per step, besides its ends, scanned for events
    bool dense_output = false;     // keep every step's interpolant
    bool save_steps = true;        // keep the state at every step end and event
    std::vector<double> t_eval;    // non-decreasing times in [0, t_end] at which to report the state
    // Stop once the field's largest component is at most gtol (0: never): the flow is then
    // stationary to that tolerance, and the state is reported as the state at every later time.
    double gtol = 0;
    // automatic: DOP853, and DOPRI5 while events set the step size (stepping.cpp)
    Method method = Method::automatic;
};

enum class EventKind : int32_t { crossing = 0, sliding_start = 1, sliding_end = 2 };

// One unit (sample, hidden layer, neuron) reaching or leaving the kink `kink` of its activation.
struct Event {
    double t;
    int64_t layer;   // 1-based hidden layer k
    int64_t sample;  // m
    int64_t neuron;  // j
    int32_t kink;    // index of the kink in the activation's list
    EventKind kind;
    int32_t from_piece, to_piece;  // linear pieces, numbered from the left (sliding: -1)
};

struct Result {
    int64_t dim = 0;
    std::vector<double> t, theta, risk;         // t = 0, step ends and events (save_steps)
    std::vector<double> eval_theta, eval_risk;  // at Options::t_eval
    // dense_output: per step, the interpolant on [t_step, t_stop] as kDenseRows x dim
    // coefficients of powers of x = (t - t_step) / h_step (runge_kutta.hpp).
    std::vector<double> dense_t, dense_h, dense_stop, dense_coefficients;
    std::vector<Event> events;
    // The piece of every hidden unit at t = 0, (M, l_1 + ... + l_{L-1}) sample-major (-1:
    // sliding from the start; empty without switching surfaces).
    std::vector<int8_t> initial_pieces;
    std::vector<double> final_theta;
    double final_risk = 0;
    double t_final = 0;  // t_end, or where the flow stopped
    int64_t n_gradient = 0;  // gradient evaluations (all samples)
    int64_t n_forward = 0;   // hidden forward passes (event nodes, t_eval risks)
    int64_t n_tangent = 0;   // forward passes with derivatives (normal velocities at events)
    int64_t n_unit = 0;      // one-sample passes (normals and values of deeper units)
    int64_t n_steps = 0, n_rejected = 0, n_grazing = 0;
    bool success = true;
    bool stationary = false;  // stopped early by Options::gtol
    std::string message;
};

// Integrates from theta0 (length d) to options.t_end. `interrupted` is polled now and then; when
// it returns true the integration stops with success = false. Throws std::invalid_argument for
// options it cannot use.
Result integrate(const NetSpec& spec, const double* theta0, const Batch<double>& data, const Options& options,
                 const std::function<bool()>& interrupted);

// n flows of one architecture from thetas0 (n x d), network i on data.X + i * x_stride etc.,
// across threads (one flow per thread at a time); each result is bitwise that of integrate().
// `interrupted` is polled by the calling thread only.
std::vector<Result> integrate_ensemble(const NetSpec& spec, const double* thetas0, int64_t n,
                                       const EnsembleBatch<double>& data, const Options& options,
                                       const std::function<bool()>& interrupted);

}  // namespace flow
}  // namespace gengrad
