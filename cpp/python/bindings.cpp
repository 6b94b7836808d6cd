// Thin pybind11 glue: checks of sizes and values, dtype dispatch, GIL release. No mathematics.
// Python (gengrad.network) converts and types the arrays; the checks here make sure that no
// call into the kernels, however it is made, can read or write out of bounds.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <iterator>

#include "gengrad/parallel.hpp"
#include "model.hpp"

namespace py = pybind11;
using gengrad::python::Model;

PYBIND11_MODULE(_core, m) {
    m.doc() = "gengrad's C++ core: forward passes, risks, generalized gradients, approximate gradients, kink counts";
    gengrad::threads_from_environment();  // a bad GENGRAD_NUM_THREADS fails the import, naming it
    gengrad::check_isa_environment();     // and so does a bad GENGRAD_ISA
    gengrad::num_threads();               // and the count is the one at import, not at the first call
    py::class_<Model> model(m, "Model");
    model
        .def(py::init<std::vector<int64_t>, int, std::vector<double>, std::vector<double>, double, std::vector<bool>, int>(),
             py::arg("widths"), py::arg("activation"), py::arg("kinks"), py::arg("slopes"), py::arg("offset"),
             py::arg("right_sided"), py::arg("loss"))
        .def_property_readonly("widths", &Model::widths)
        .def("layout", &Model::layout);
    gengrad::python::define_operations(model);
    gengrad::python::register_flow(m);
    m.def("set_num_threads", &gengrad::set_num_threads, py::arg("n"));
    m.attr("MAX_THREADS") = gengrad::kMaxThreads;
    m.def("set_thread_limit", &gengrad::set_thread_limit, py::arg("n"));
    m.def("get_thread_limit", &gengrad::thread_limit);
    m.def("get_num_threads", &gengrad::num_threads);
    m.def("workspace_bytes", &gengrad::workspace_bytes);
    const auto codes = [](const auto& names) {
        py::dict table;
        for (size_t code = 0; code < std::size(names); ++code) table[names[code]] = int(code);
        return table;
    };
    m.attr("ACTIVATION_CODES") = codes(gengrad::kActivationKindNames);
    m.attr("FAMILY_CODES") = codes(gengrad::kFamilyNames);
    m.attr("LOSS_CODES") = codes(gengrad::kLossNames);
    m.attr("MAX_LAYERS") = gengrad::kMaxLayers;
    m.def("select_weight_panels", &gengrad::select_weight_panels, py::arg("policy"));
    m.def("select_isa", [](const std::string& isa) { return std::string(gengrad::select_kernels(isa).isa); }, py::arg("isa"));
    m.def("build_info", []() {
        py::dict info;
#if defined(__clang__)
        info["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
        info["compiler"] = std::string("gcc ") + __VERSION__;
#else
        info["compiler"] = "unknown";
#endif
        info["isa"] = gengrad::kernels().isa;
        info["isas_supported"] = gengrad::supported_isas();
        std::vector<std::string> built;
        for (const auto* k : gengrad::all_kernels()) built.emplace_back(k->isa);
        info["isas_built"] = built;
        info["threads"] = gengrad::num_threads();
        info["weight_panels"] = gengrad::weight_panel_policy();
        info["max_threads"] = gengrad::kMaxThreads;
        return info;
    });
}
