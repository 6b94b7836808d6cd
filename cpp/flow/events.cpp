// Events in an accepted step (flow.hpp): the hidden pre-activations on the step's pattern at
// its ends and at `event_nodes` equally spaced points of the dense output, compared with the
// bounds of each unit's piece; for sliding surfaces, alpha at the same points. In the first node
// interval where something happens, every unit that leaves its piece there is located by the
// Illinois method on the dense output, and so is every alpha that leaves [0, 1]; the earliest of
// them is the event.
#include <algorithm>
#include <cmath>
#include <limits>

#include "flow/runge_kutta.hpp"
#include "flow/integrator.hpp"

namespace gengrad {
namespace flow {

namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();
constexpr double kAlphaRounding = 1e-12;

double time_tolerance(double a, double b) { return 4 * kEps * std::max(std::fabs(a), std::fabs(b)); }

// The Illinois variant of regula falsi on a bracket with phi(a) > 0 >= phi(b). Returns the final
// right end, where phi <= 0: for an event, the first representable state past the surface.
// Falls back to bisection when an iteration does not shrink the bracket enough.
template <class Phi>
double illinois(Phi&& phi, double a, double fa, double b, double fb) {
    if (!(fa > 0)) return a;
    const double xtol = time_tolerance(a, b);
    int side = 0;
    for (int iteration = 0; iteration < 400 && b - a > xtol && fb != 0; ++iteration) {
        double c = (a * fb - b * fa) / (fb - fa);
        if (!(c > a && c < b) || iteration % 4 == 3) c = a + (b - a) / 2;
        const double fc = phi(c);
        if (fc > 0) {
            a = c;
            fa = fc;
            if (side == 1) fb /= 2;
            side = 1;
        } else {
            b = c;
            fb = fc;
            if (side == -1) fa /= 2;
            side = -1;
        }
    }
    return b;
}

// Whether the cubic Hermite interpolant of a gap (ga, gb > 0 at the ends of an interval of
// length delta, slopes sa, sb there) dips to 0 or below inside it, and where its minimum is
// (as a fraction of the interval): a unit that leaves its piece and comes back between two
// nodes, which their values alone do not show.
bool hermite_dip(double ga, double gb, double sa, double sb, double delta, double& x_min) {
    const double c1 = delta * sa, c2 = 3 * (gb - ga) - 2 * delta * sa - delta * sb;
    const double c3 = 2 * (ga - gb) + delta * sa + delta * sb;
    auto p = [&](double x) { return ga + x * (c1 + x * (c2 + x * c3)); };
    // p'(x) = c1 + 2 c2 x + 3 c3 x^2
    double roots[2];
    int n = 0;
    if (c3 == 0) {
        if (c2 != 0) roots[n++] = -c1 / (2 * c2);
    } else {
        const double disc = c2 * c2 - 3 * c3 * c1;
        if (disc >= 0) {
            const double q = -(c2 + std::copysign(std::sqrt(disc), c2));
            roots[n++] = q / (3 * c3);
            if (q != 0) roots[n++] = c1 / q;
        }
    }
    bool dips = false;
    for (int i = 0; i < n; ++i)
        if (roots[i] > 0 && roots[i] < 1 && p(roots[i]) <= 0 && (!dips || p(roots[i]) < p(x_min))) {
            x_min = roots[i];
            dips = true;
        }
    return dips;
}

}  // namespace

void Integrator::state_at(double t, double* out, int64_t n) const {
    const double x = t >= t_stop_ ? (t_stop_ - t_step_) / h_step_ : (t - t_step_) / h_step_;
    dense_value(d_, coefficients_.data(), x, out, n);
}

// The state at t projected onto the sliding surfaces, into node_theta_. The interpolant is off
// them by its error, and where a one-sided field is nearly tangent, alpha there moves with the
// offset times the field's normal derivative: in a deep net, by 1e-6 for an offset of 1e-9, which
// reads as an exit that the flow does not make.
void Integrator::sliding_state_at(double t) {
    state_at(t, node_theta_.data());
    if (!sliding_.project_state(node_theta_.data()))
        fail("the state could not be projected onto the sliding surfaces at t = " + number(t));
}

double Integrator::gap_at(int64_t u, bool upper, double t) {
    state_at(t, node_theta_.data(), field_.prefix(units_.layer(u)));
    return field_.pattern().gap(u, upper, field_.unit_value(node_theta_.data(), u));
}

double Integrator::locate_crossing(int64_t u, bool upper, double a, double ga, double b, double gb) {
    return illinois([&](double t) { return gap_at(u, upper, t); }, a, ga, b, gb);
}

// A unit on its bound at a (within the tolerance) and clearly out at b either went into its
// piece and came back (a crossing to locate) or left at once. Halving back from b finds a
// point inside if there is one: log2((b - a) / (the time it spent inside)) evaluations.
bool Integrator::find_inside(int64_t u, bool upper, double a, double b, double& t_inside, double& g_inside) {
    for (int k = 0; k < 60; ++k) {
        const double t = a + (b - a) / 2;
        if (!(t > a && t < b)) return false;
        const double g = gap_at(u, upper, t);
        if (g > 0) {
            t_inside = t;
            g_inside = g;
            return true;
        }
        b = t;
    }
    return false;
}

// How far alpha_s is inside [-slack, 1 + slack] at time t of the step (overwrites z_new_ and
// g_new_: only called once the step has an event, so that its end is not taken).
double Integrator::exit_margin(size_t s, double t, double slack) {
    sliding_state_at(t);
    field(node_theta_.data(), work_.data(), z_new_.data(), g_new_.data());
    return margin(sliding_.alphas(node_theta_.data(), g_new_.data())[s]) + slack;
}

// Where alpha_s leaves [-slack, 1 + slack] in [a, b] (inside at a), or infinity if it is still
// inside at b.
double Integrator::locate_exit(size_t s, double a, double b, double slack) {
    const double ma = exit_margin(s, a, slack);
    if (!(ma > 0)) return a;
    const double mb = exit_margin(s, b, slack);
    if (mb > 0) return std::numeric_limits<double>::infinity();
    return illinois([&](double t) { return exit_margin(s, t, slack); }, a, ma, b, mb);
}

StepEvent Integrator::scan_step() {
    const int nodes = options_.event_nodes;
    const int64_t U = units_.size();
    const Pattern& pattern = field_.pattern();
    const bool sliding = !sliding_.empty();
    node_z_.resize(2 * U);
    node_dz_.resize(2 * U);
    start_dz_.resize(U);
    end_dz_.resize(U);
    if (!start_dz_valid_) field_.hidden(theta_.data(), f_.data(), nullptr, start_dz_.data());
    const double* before = z_.data();
    const double* before_dz = start_dz_.data();
    std::vector<double> alphas_after;
    std::vector<int> last_inside(sliding_.size());  // the last node with alpha in [0, 1]
    for (size_t s = 0; s < sliding_.size(); ++s) last_inside[s] = margin(alphas_[s]) + kAlphaRounding > 0 ? 0 : -1;
    auto node_time = [&](int i) { return i > nodes ? t_stop_ : t_step_ + h_step_ * double(i) / (nodes + 1); };

    struct Bracket {
        int64_t unit;
        bool upper;
        double a, ga, b, gb;
    };
    std::vector<Bracket> crossings;
    std::vector<int64_t> departures;
    std::vector<int8_t> departure_upper;
    struct Exit {
        size_t surface;
        int inside, outside;  // the last node with alpha in [0, 1] (-1: none in this step), the first out
        double band;          // the band there
    };
    std::vector<Exit> exits;
    for (int i = 0; i <= nodes; ++i) {
        const double ta = node_time(i), tb = node_time(i + 1);
        const double *after, *after_dz;
        if (i < nodes) {
            double* z = node_z_.data() + (i % 2) * U;
            double* dz = node_dz_.data() + (i % 2) * U;
            if (sliding) {
                sliding_state_at(tb);
                node_g_.resize(U);
                field(node_theta_.data(), work_.data(), z, node_g_.data());
                alphas_after = sliding_.alphas(node_theta_.data(), node_g_.data());
                field_.hidden(node_theta_.data(), work_.data(), nullptr, dz);
            } else {
                state_at(tb, node_theta_.data());
                dense_derivative(d_, coefficients_.data(), (tb - t_step_) / h_step_, h_step_, work_.data());
                field_.hidden(node_theta_.data(), work_.data(), z, dz);
            }
            after = z;
            after_dz = dz;
        } else {
            field_.hidden(y_new_.data(), f_new_, nullptr, end_dz_.data());
            after = z_new_.data();
            after_dz = end_dz_.data();
            alphas_after = node_alphas_;
        }
        for_each_bound([&](int64_t u, bool upper, double bound) {
            const double ga = pattern.gap(u, upper, before[u]), gb = pattern.gap(u, upper, after[u]);
            const double delta = tb - ta, sa = upper ? -before_dz[u] : before_dz[u],
                         sb = upper ? -after_dz[u] : after_dz[u];
            // Inside at both nodes, and the Hermite cubic cannot dip to the bound: it lies above
            // the chord less x(1-x)^2 or x^2(1-x) (<= 4/27) times the slopes' departures from
            // the chord's. The common case, tested first.
            if (ga > 0 && gb > 0 &&
                std::min(ga, gb) > 0.15 * (std::fabs(delta * sa - (gb - ga)) + std::fabs(delta * sb - (gb - ga))))
                return;
            double t_inside, g_inside, x_min;
            if (ga > 0 && gb <= 0) {
                crossings.push_back({u, upper, ta, ga, tb, gb});
            } else if (ga > 0 && gb > 0 && hermite_dip(ga, gb, sa, sb, delta, x_min)) {
                const double t_dip = ta + x_min * (tb - ta), g_dip = gap_at(u, upper, t_dip);
                if (g_dip <= 0) crossings.push_back({u, upper, ta, ga, t_dip, g_dip});
            } else if (!(ga > 0) && gb < std::min(ga, 0.0) - boundary_tolerance(bound)) {
                // On its bound (or just out of its piece and not moving further out: the projection
                // onto sliding surfaces moves a state by about the local error) at every node since
                // the step began, and now clearly further out. (A crossing from inside would have
                // been found at an earlier node.)
                if (find_inside(u, upper, ta, tb, t_inside, g_inside)) {
                    crossings.push_back({u, upper, t_inside, g_inside, tb, gb});
                } else {
                    departures.push_back(u);
                    departure_upper.push_back(upper);
                }
            }
        });
        for (size_t s = 0; s < alphas_after.size(); ++s) {
            const double inside = margin(alphas_after[s]);
            if (inside < -band(s)) {
                exits.push_back({s, last_inside[s], i + 1, band(s)});
            }
            else if (inside + kAlphaRounding > 0) last_inside[s] = i + 1;
        }
        if (!crossings.empty() || !departures.empty() || !exits.empty()) break;
        before = after;
        before_dz = after_dz;
    }
    StepEvent event;
    if (crossings.empty() && departures.empty() && exits.empty()) return event;
    event.found = true;
    event.t = t_stop_;
    // Only the earliest crossing matters (the others are found again after the restart): the
    // brackets are located in the order of their regula falsi estimates, and one is located only
    // if its unit is out of its piece by the earliest time so far. With events in most steps of
    // large problems, that is one location and a check per other unit, not a location each.
    std::vector<double> crossing_t(crossings.size(), std::numeric_limits<double>::infinity()), exit_t;
    std::vector<size_t> order(crossings.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    auto estimate = [&](const Bracket& c) { return c.a + (c.b - c.a) * c.ga / (c.ga - c.gb); };
    std::sort(order.begin(), order.end(),
              [&](size_t i, size_t j) { return estimate(crossings[i]) < estimate(crossings[j]); });
    for (size_t i : order) {
        const Bracket& c = crossings[i];
        if (!(c.a < event.t)) continue;
        double b = c.b, gb = c.gb;
        if (event.t < c.b) {
            b = event.t;
            gb = gap_at(c.unit, c.upper, b);
            if (gb > 0) continue;  // still inside when the earliest so far happens
        }
        crossing_t[i] = locate_crossing(c.unit, c.upper, c.a, c.ga, b, gb);
        event.t = std::min(event.t, crossing_t[i]);
    }
    // Exits are located where alpha leaves [0, 1] (to its rounding: where a one-sided field is
    // tangent to the surface, alpha sits at 0 or 1 to rounding). Where it was already out of
    // [0, 1] at the step's start, inside the band, where it leaves the band: locating it at the
    // start instead would end sliding there again after each restart, without progress in t.
    // Each field evaluation of the search costs a gradient: only up to the earliest event so far.
    if (!departures.empty()) event.t = t_step_;
    for (const Exit& x : exits) {
        const bool inside = x.inside >= 0;
        const double a = inside ? node_time(x.inside) : t_step_;
        exit_t.push_back(a < event.t ? locate_exit(x.surface, a, std::min(node_time(x.outside), event.t),
                                                   inside ? kAlphaRounding : x.band)
                                     : std::numeric_limits<double>::infinity());
        if (a == event.t && a == t_step_) exit_t.back() = t_step_;  // out since the step's start
        event.t = std::min(event.t, exit_t.back());
    }
    for (size_t i = 0; i < crossings.size(); ++i)
        if (crossing_t[i] <= event.t) {
            event.units.push_back(crossings[i].unit);
            event.upper.push_back(crossings[i].upper);
        }
    if (event.t == t_step_) {
        event.units.insert(event.units.end(), departures.begin(), departures.end());
        event.upper.insert(event.upper.end(), departure_upper.begin(), departure_upper.end());
    }
    for (size_t i = 0; i < exits.size(); ++i)
        if (exit_t[i] <= event.t) {
            const size_t s = exits[i].surface;
            event.surfaces.push_back(s);
            // The side alpha left towards, where it is clearly out.
            event.surface_upper.push_back(alphas_after[s] > 0.5);
        }
    return event;
}

}  // namespace flow
}  // namespace gengrad
