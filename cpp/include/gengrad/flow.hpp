// The gradient flow theta'(t) = -G(theta(t)) of a network's empirical risk (MATH.md §7), in
// float64.
//
// For a piecewise-linear activation the field is smooth (polynomial) on each activation pattern
// and jumps across the switching surfaces {z^k_{m,j}(theta) = kink}. The integrator keeps the
// pattern fixed while it steps, so the Runge-Kutta stages see one smooth field (continued
// polynomially past the surface), and restarts the method where the pattern changes:
//
//  1. Steps: Dormand-Prince 8(5,3) (dop853.hpp) with error control in rtol/atol, the standard
//     step-size controller (safety 0.9, factors in [0.2, 10], no growth right after a
//     rejection) and Hairer's starting step.
//  2. Events: after each accepted step the hidden pre-activations of every sample are evaluated,
//     with the step's pattern, at the step ends and at `event_nodes` equally spaced points of the
//     dense output. The first node interval in which some unit leaves its piece is searched by
//     the Illinois method on the dense output, unit by unit, to a few ulps in t; the state moves
//     to the earliest crossing (the end of the final bracket, just past the surface) and the
//     method restarts there with a fresh F (no FSAL reuse across a switch).
//  3. Crossing or sliding (Filippov): at the event the normal velocity dz/dt = grad z . F of the
//     surface is compared under the fields of the piece being left (F_p) and entered (F_q):
//     F_q points away from the surface: crossing (the pattern bit flips); F_q points back and F_p
//     into the surface: sliding; both point back to the old side: a grazing touch (no change).
//     While sliding, the field is the Filippov convex combination alpha F_upper + (1-alpha)
//     F_lower with alpha set so that the normal velocity vanishes; for a gradient field this is
//     the orthogonal projection of either one-sided field onto the surface's tangent space (the
//     two differ by a multiple of grad z, because the one-sided risks agree on the surface),
//     which is how it is computed, with alpha found alongside by a Newton solve on the few
//     samples whose units slide. Several surfaces may slide at once (the projection is onto the
//     intersection; each surface has its own alpha: the multilinear Filippov field of Dieci and
//     Lopez). The state is projected back onto the surfaces after every step, so z stays at the
//     kink without chattering. Sliding on a surface ends where its alpha leaves [0, 1] (located
//     by the Illinois method on the dense output): the unit then takes the piece that alpha
//     left towards. Units whose switching functions coincide (duplicate samples, for instance)
//     are one surface.
//  4. At t = 0, units exactly at a kink take the piece both one-sided fields point into, slide
//     if both point into the surface, and take the convention's piece if both point away (or a
//     velocity is exactly zero), deciding unit group by unit group in the order of the units.
//
// Smooth activations run the same code with no events. Limits: a unit that leaves and re-enters
// its piece within one node interval is not seen; alpha is checked at the step ends only; a
// group of coincident surfaces is formed when it starts sliding and is not split later.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "gengrad/kernels.hpp"

namespace gengrad {
namespace flow {

struct Options {
    double t_end = 1;
    double rtol = 1e-8;
    double atol = 1e-10;
    double first_step = 0;  // 0: Hairer's starting step
    double max_step = std::numeric_limits<double>::infinity();
    int64_t max_steps = 1000000;  // accepted steps
    int event_nodes = 3;           // dense-output points per step at which events are looked for
    bool dense_output = false;     // keep every step's interpolant
    bool save_steps = true;        // keep the state at every step end and event
    std::vector<double> t_eval;    // increasing times in [0, t_end] at which to report the state
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
    std::vector<double> t, theta, risk;       // step ends and event times (save_steps)
    std::vector<double> eval_theta, eval_risk;  // at Options::t_eval
    // dense_output: per step, the interpolant on [t_step, t_stop] (dop853::dense_value with
    // x = (t - t_step) / h_step) as kDenseRows x dim coefficients.
    std::vector<double> dense_t, dense_h, dense_stop, dense_coefficients;
    std::vector<Event> events;
    std::vector<double> final_theta;
    double final_risk = 0;
    int64_t n_gradient = 0;         // full gradient evaluations (all samples)
    int64_t n_forward = 0;          // full forward passes (event nodes, risks at t_eval)
    int64_t n_sample_gradient = 0;  // one-sample gradients (sliding, event classification)
    int64_t n_steps = 0, n_rejected = 0, n_grazing = 0;
    bool success = true;
    std::string message;
};

// Integrates from theta0 (length d) to options.t_end. `interrupted` is polled now and then; when
// it returns true the integration stops with success = false. Throws std::invalid_argument for
// options it cannot use.
Result integrate(const NetSpec& spec, const double* theta0, const Batch<double>& data, const Options& options,
                 const std::function<bool()>& interrupted);

}  // namespace flow
}  // namespace gengrad
