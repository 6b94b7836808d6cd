// Run-time choice of the kernel build (SSE2 / AVX2 / AVX-512 on x86-64, portable elsewhere).
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "gengrad/contract.hpp"

namespace gengrad {

// The builds compiled into this library, in increasing order of preference.
std::vector<const IsaKernels*> all_kernels();
// The names of the builds this CPU can run.
std::vector<std::string> supported_isas();
// The build in use: the best one the CPU supports, or the one named by the environment
// variable GENGRAD_ISA at import, or by select_kernels.
const IsaKernels& kernels();
// "auto" or a build name; throws std::invalid_argument if unknown or unsupported by the CPU.
const IsaKernels& select_kernels(const std::string& isa);
// Throws std::invalid_argument naming GENGRAD_ISA if it is set to a build that select_kernels
// refuses. Called at import: a mistyped or unusable name must not pass for the default build.
void check_isa_environment();
// The weight panel policy of weight_panels_per_worker (contract.hpp): "auto" (AMD: shared; other
// CPUs, measured on Intel only: per worker), "shared" or "per_worker"; throws
// std::invalid_argument otherwise. Returns the policy this call set, "shared" or "per_worker".
std::string select_weight_panels(const std::string& policy);
// The policy in effect, "shared" or "per_worker".
std::string weight_panel_policy();
// The bytes of scratch memory the kernels hold now, over all threads (reused across calls).
std::size_t workspace_bytes();

}  // namespace gengrad
