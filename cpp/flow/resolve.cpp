// The pattern the flow continues on, after an event or wherever units sit on the bound of their
// piece (flow.hpp). Each unit within the boundary tolerance of its bound must not move out of
// its piece under the field, and each sliding surface must keep alpha in [0, 1]; while some do
// not, the worst is fixed, with the normal velocities dz/dt = grad z . F of all units from one
// forward pass with derivatives:
//  - a unit moving out of piece q towards piece p takes p (a crossing), unless it came from p in
//    this round: then both one-sided fields push it into the surface, and it slides;
//  - a surface whose alpha left [0, 1] ends sliding; its units take the piece alpha left
//    towards (alpha < 0: the lower piece, whose field is tangent at alpha = 0).
// A unit that moves neither in nor out (a normal velocity within rounding of 0) stays where it
// is; if it then leaves at second order, the next step's scan sees it depart. At t = 0 the units
// exactly at a kink start on the convention's piece, so the convention decides only between two
// sides that are both consistent (both fields point away from the surface).
#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>
#include <unordered_map>

#include "flow/integrator.hpp"

namespace gengrad {
namespace flow {

namespace {

int mode_of(const Pattern& pattern, int64_t u) {
    return pattern.sliding(u) ? Pattern::kSliding + pattern.sliding_kink(u) : pattern.piece(u);
}

std::string unit_name(const Units& units, int64_t u) {
    return "(layer " + std::to_string(units.layer(u)) + ", sample " + std::to_string(units.sample(u)) + ", neuron " +
           std::to_string(units.neuron(u)) + ")";
}

}  // namespace

// Pieces by position, layer by layer (a unit's pre-activation depends on the pieces below it);
// units exactly at a kink take the convention's piece, which resolve() then checks.
void Integrator::initial_pattern() {
    Pattern& pattern = field_.pattern();
    for (int64_t k = 1; k < field_.spec().n_layers; ++k) {
        field_.hidden(theta_.data(), nullptr, z_.data(), nullptr);
        for (int64_t r = units_.first_row[k]; r < units_.first_row[k + 1]; ++r)
            for (int64_t m = 0; m < units_.M; ++m) pattern.set_piece(r * units_.ld + m, pattern.piece_at(z_[r * units_.ld + m]));
    }
}

// Remembers the mode of unit u before its first change in this round, for the events.
void Integrator::touch(int64_t u) {
    if (std::find(changed_units_.begin(), changed_units_.end(), u) != changed_units_.end()) return;
    changed_units_.push_back(u);
    changed_before_.push_back(mode_of(field_.pattern(), u));
}

void Integrator::resolve(double t, const StepEvent& event) {
    Pattern& pattern = field_.pattern();
    changed_units_.clear();
    changed_before_.clear();
    std::unordered_map<int64_t, int> came_from, changes;
    std::vector<size_t> exits(event.surfaces);
    std::vector<size_t> order(exits.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return exits[a] > exits[b]; });
    for (size_t i : order) {  // from the last surface, so that the indices of the others hold
        const Surface& surface = sliding_[exits[i]];
        for (int64_t u : surface.units) {
            touch(u);
            came_from[u] = mode_of(pattern, u);
            recent_exits_[u] = {result_.n_steps, surface.hysteresis};
        }
        sliding_.remove(exits[i], event.surface_upper[i] ? surface.kink + 1 : surface.kink);
    }
    if (t != flipped_time_) {
        flipped_.clear();
        flipped_time_ = t;
    }
    for (size_t i = 0; i < event.units.size(); ++i) {
        const int64_t u = event.units[i];
        if (pattern.sliding(u)) continue;
        const int p = pattern.piece(u), q = event.upper[i] ? p + 1 : p - 1;
        const auto flip = flipped_.find(u);
        if (flip != flipped_.end() && flip->second == q) {
            // It left q for p at this very time and now leaves p for q: tangent to the surface
            // on both sides, it is pushed into it at second order from both.
            start_sliding(u, std::min(p, q));
            if (!result_.success) return;
            continue;
        }
        touch(u);
        came_from[u] = p;
        pattern.set_piece(u, q);
    }

    bool evaluated = !event.found;  // a step without event left the state evaluated
    dz_.resize(units_.size());
    std::vector<double> normal(d_);
    int64_t limit = 64;
    for (int iteration = 0;; ++iteration) {
        if (!evaluated) {
            if (!sliding_.empty() && !sliding_.project_state(theta_.data())) {
                fail("the state could not be projected onto the sliding surfaces at t = " + number(t));
                return;
            }
            evaluate_current();
            if (!result_.success) return;
            evaluated = true;
        }
        // Coincident switching functions of a deeper layer part where a lower unit of one member's
        // sample switches (at an event; a member found off its surface stands for one missed):
        // such a member takes the piece below the kink and is checked below like any unit.
        bool parted = false;
        for (size_t s = 0; s < sliding_.size(); ++s) {
            const double kink = pattern.kink(sliding_[s].kink);
            const std::vector<int64_t> members(sliding_[s].units.begin() + 1, sliding_[s].units.end());
            const bool compare = event.found && iteration == 0 && !members.empty() &&
                                 units_.layer(sliding_[s].units[0]) > 1;
            if (compare) field_.unit_normal(theta_.data(), sliding_[s].units[0], normal.data());
            for (int64_t u : members)
                if (std::fabs(z_[u] - kink) > boundary_tolerance(kink) ||
                    (compare && !same_normal(u, normal.data()))) {
                    touch(u);
                    came_from[u] = mode_of(pattern, u);
                    sliding_.detach(s, u, z_[u] > kink + boundary_tolerance(kink) ? sliding_[s].kink + 1 : sliding_[s].kink);
                    parted = true;
                }
        }
        if (parted) {
            evaluated = false;
            continue;
        }
        // The units on a bound of their piece, and how fast each moves out of it.
        int64_t worst_unit = -1;
        bool worst_upper = false;
        double worst_speed = 0;
        double F_norm = 0;
        for (double v : f_) F_norm += v * v;
        F_norm = std::sqrt(F_norm);
        bool velocities = false;
        int64_t candidates = 0;
        for_each_bound([&](int64_t u, bool upper, double bound) {
            // A unit changed in this round may have been carried off its bound by the projection
            // onto sliding surfaces: it stays a candidate to that tolerance.
            const double gap = pattern.gap(u, upper, z_[u]);
            const bool changed = came_from.count(u) != 0;
            if (gap > (changed ? invariant_tolerance(bound) : boundary_tolerance(bound))) return;
            ++candidates;
            if (!velocities) {
                field_.hidden(theta_.data(), f_.data(), nullptr, dz_.data());
                velocities = true;
            }
            // On the bound, a unit must not move out; just outside it (after a projection onto
            // sliding surfaces), it must move back in.
            const bool outside = gap < -boundary_tolerance(bound);
            const double outward = upper ? dz_[u] : -dz_[u];
            if (!outside && !(outward > 0)) return;
            const auto [first, last] = field_.unit_normal(theta_.data(), u, normal.data());
            double n_norm = 0;
            for (int64_t i = first; i < last; ++i) n_norm += normal[i] * normal[i];
            const double scale = std::sqrt(n_norm) * F_norm;
            const double excess = outside ? outward + kTangent * scale : outward - kTangent * scale;
            if (excess > 0 && (worst_unit < 0 || excess / scale > worst_speed)) {
                worst_unit = u;
                worst_upper = upper;
                worst_speed = excess / scale;
            }
        });
        if (iteration == 0) limit += 4 * candidates;
        size_t worst_surface = sliding_.size();
        double worst_inside = 0;
        for (size_t s = 0; s < alphas_.size(); ++s)
            if (margin(alphas_[s]) < -band(s) && margin(alphas_[s]) < worst_inside) {
                worst_inside = margin(alphas_[s]);
                worst_surface = s;
            }
        if (worst_unit < 0 && worst_surface == sliding_.size()) break;
        if (iteration >= limit) {
            fail("the activation pattern does not settle at t = " + number(t) + " (" +
                 std::to_string(iteration) + " changes)");
            return;
        }
        evaluated = false;
        if (worst_surface < sliding_.size()) {  // the end of sliding
            const Surface surface = sliding_[worst_surface];
            for (int64_t u : surface.units) {
                touch(u);
                came_from[u] = mode_of(pattern, u);
                recent_exits_[u] = {result_.n_steps, surface.hysteresis};
            }
            sliding_.remove(worst_surface, alphas_[worst_surface] > 0.5 ? surface.kink + 1 : surface.kink);
            continue;
        }
        const int64_t u = worst_unit;
        const int q = pattern.piece(u), p = worst_upper ? q + 1 : q - 1;
        const int kink = worst_upper ? q : q - 1;
        if (++changes[u] > 3) {
            fail("the activation pattern does not settle at t = " + number(t) + ": unit " +
                 unit_name(units_, u) + " keeps switching");
            return;
        }
        const auto from = came_from.find(u);
        if (from != came_from.end() && (from->second == p || from->second == Pattern::kSliding + kink)) {
            start_sliding(u, kink);  // pushed into the surface from both sides
            if (!result_.success) return;
        } else {
            touch(u);
            came_from[u] = q;
            pattern.set_piece(u, p);
        }
    }
    for (size_t i = 0; i < changed_units_.size(); ++i)
        if (changed_before_[i] < Pattern::kSliding) flipped_[changed_units_[i]] = changed_before_[i];
    if (!changed_units_.empty()) start_dz_valid_ = false;
    record_changes(t, event);
}

// Unit u starts sliding along `kink`, with every unit whose switching function coincides with
// its own: the same neuron of another sample on the same kink with an equal normal (duplicate
// inputs; deeper, samples whose lower units all sit on flat pieces), sliding or not.
void Integrator::start_sliding(int64_t u, int kink) {
    Pattern& pattern = field_.pattern();
    const double bound = pattern.kink(kink);
    std::vector<double> normal(d_);
    field_.unit_normal(theta_.data(), u, normal.data());
    auto coincides = [&](int64_t v) { return units_.row(v) == units_.row(u) && v != u && same_normal(v, normal.data()); };
    // A unit that left this surface a step or two ago and is back has chattered: the exit was
    // within the error of alpha (near a side whose field attracts it back, where the flow
    // hovers within that error of the surface; or near a stationary point). Its band grows
    // tenfold (to kMaxHysteresis times), so that chattering stops after a few rounds; sliding
    // on at alpha = -band instead of hovering changes the state by O(band^2).
    double hysteresis = 1;
    const auto exit = recent_exits_.find(u);
    if (exit != recent_exits_.end() && result_.n_steps - exit->second.first <= 2) {
        if (exit->second.second >= kMaxHysteresis && ++chattering_[u] > kMaxChattering) {
            // Even the widest band does not hold it: which side the flow takes is not
            // determined to this tolerance (a tighter rtol narrows alpha's error).
            fail("sliding of unit " + unit_name(units_, u) + " chatters at t = " + number(flipped_time_) +
                 ": it left and re-entered its surface " + std::to_string(kMaxChattering) +
                 " times with its hysteresis band at the widest");
            return;
        }
        hysteresis = std::min(kMaxHysteresis, 10 * exit->second.second);
    }
    Surface surface{{u}, kink, hysteresis};
    for (size_t s = sliding_.size(); s-- > 0;)
        if (sliding_[s].kink == kink && coincides(sliding_[s].units[0])) {
            surface.hysteresis = std::max(surface.hysteresis, sliding_[s].hysteresis);
            for (int64_t v : sliding_[s].units) {
                touch(v);
                surface.units.push_back(v);
            }
            sliding_.remove(s, kink);
        }
    const int64_t row = units_.row(u);
    for (int64_t m = 0; m < units_.M; ++m) {
        const int64_t v = row * units_.ld + m;
        if (v == u || pattern.sliding(v) ||
            std::find(surface.units.begin(), surface.units.end(), v) != surface.units.end())
            continue;
        const int p = pattern.piece(v);
        const bool on_kink = (p == kink && pattern.gap(v, true, z_[v]) <= boundary_tolerance(bound)) ||
                             (p == kink + 1 && pattern.gap(v, false, z_[v]) <= boundary_tolerance(bound));
        if (on_kink && coincides(v)) surface.units.push_back(v);
    }
    for (int64_t v : surface.units) touch(v);
    sliding_.add(std::move(surface));
}

// Whether the switching function of unit v has the gradient `normal` (of a unit in its row)
// at theta_, to 1e-12 of its largest entry: the test of coincidence.
bool Integrator::same_normal(int64_t v, const double* normal) {
    other_normal_.resize(d_);
    const auto support = field_.unit_normal(theta_.data(), v, other_normal_.data());
    double scale = 0;
    for (int64_t i = support.first; i < support.second; ++i) scale = std::max(scale, std::fabs(normal[i]));
    for (int64_t i = support.first; i < support.second; ++i)
        if (std::fabs(other_normal_[i] - normal[i]) > 1e-12 * scale) return false;
    return true;
}

void Integrator::record_changes(double t, const StepEvent& event) {
    const Pattern& pattern = field_.pattern();
    const std::vector<int64_t>& touched = changed_units_;
    const std::vector<int>& before = changed_before_;
    std::vector<size_t> order(touched.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    auto key = [&](int64_t u) { return std::make_tuple(units_.layer(u), units_.sample(u), units_.neuron(u)); };
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key(touched[a]) < key(touched[b]); });
    for (size_t i : order) {
        const int64_t u = touched[i];
        const int was = before[i], is = mode_of(pattern, u);
        if (was == is) {
            if (std::find(event.units.begin(), event.units.end(), u) != event.units.end()) ++result_.n_grazing;
            continue;
        }
        auto emit = [&](EventKind kind, int kink, int from, int to) {
            result_.events.push_back({t, units_.layer(u), units_.sample(u), units_.neuron(u), int32_t(kink), kind,
                                      int32_t(from), int32_t(to)});
        };
        const bool was_sliding = was >= Pattern::kSliding, is_sliding = is >= Pattern::kSliding;
        if (starting_) {  // the initial pattern: only the units that slide from the beginning are events
            if (is_sliding) emit(EventKind::sliding_start, is - Pattern::kSliding, -1, -1);
            continue;
        }
        if (was_sliding) emit(EventKind::sliding_end, was - Pattern::kSliding, -1, is_sliding ? -1 : is);
        if (is_sliding) emit(EventKind::sliding_start, is - Pattern::kSliding, was_sliding ? -1 : was, -1);
        if (!was_sliding && !is_sliding) emit(EventKind::crossing, std::min(was, is), was, is);
    }
}

// How far out of its piece a unit may be found at an accepted state: just outside, and moving
// back in (resolve() sees to that), after a projection onto sliding surfaces, which moves the
// state by about the local error.
double Integrator::invariant_tolerance(double bound) const {
    return boundary_tolerance(bound) + 10 * (options_.atol + options_.rtol * (1 + std::fabs(bound)));
}

bool Integrator::check_invariants(double t) {
    const Pattern& pattern = field_.pattern();
    for (size_t s = 0; s < sliding_.size(); ++s)
        for (int64_t u : sliding_[s].units) {
            const double kink = pattern.kink(sliding_[s].kink);
            if (std::fabs(z_[u] - kink) > boundary_tolerance(kink))
                return fail("unit " + unit_name(units_, u) + " left its sliding surface at t = " + number(t));
        }
    int64_t outside = -1;
    double by = 0;
    for_each_bound([&](int64_t u, bool upper, double bound) {
        if (outside < 0 && pattern.gap(u, upper, z_[u]) < -invariant_tolerance(bound)) {
            outside = u;
            by = -pattern.gap(u, upper, z_[u]);
        }
    });
    if (outside >= 0)
        return fail("unit " + unit_name(units_, outside) + " is outside its piece at t = " + number(t) + " (by " +
                    number(by) + ")");
    for (size_t s = 0; s < alphas_.size(); ++s)
        if (margin(alphas_[s]) < -band(s))
            return fail("a sliding surface has its alpha outside [0, 1] at t = " + number(t));
    return true;
}

}  // namespace flow
}  // namespace gengrad
