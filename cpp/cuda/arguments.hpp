// The CUDA backend's arguments and results (included by bindings.cpp): device memory and the
// arrays that view it, DLPack in both directions, the checks of NumPy and device arguments (NaN/Inf
// scans of device arrays run together, once per call), results that follow theta.
#pragma once
#include <Python.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>
#include "../python/model.hpp"
#include "dlpack.h"
#include "gengrad/activation.hpp"
#include "launch.hpp"

namespace py = pybind11;

namespace gengrad {
namespace cuda {

using python::checked;
using python::shape_text;

// Device memory shared by the arrays that view it.
using Buffer = std::shared_ptr<void>;

inline Buffer allocate(std::size_t bytes) { return Buffer(device_alloc(bytes), device_free); }

// The result type for device inputs: a C-contiguous (or column-sliced) float array in device
// memory that any DLPack consumer takes without a copy (torch.from_dlpack, cupy.from_dlpack,
// jax.dlpack.from_dlpack), and np.asarray copies to the host. The host emulation makes them in
// host memory (DLPack device CPU), so that the DLPack code is tested without a GPU.
struct DeviceArray {
    Buffer buffer;
    std::size_t byte_offset = 0;
    std::vector<int64_t> shape, strides;  // strides in elements
    int bits = 64;
    DLDeviceType device_type = kDLCUDA;
    int device = 0;

    static DeviceArray make(std::vector<int64_t> shape, int bits, bool on_host) {
        DeviceArray a;
        int64_t count = 1;
        for (int64_t n : shape) count *= n;
        const std::size_t bytes = std::size_t(count) * bits / 8;
        if (on_host) {
            a.buffer = Buffer(std::malloc(bytes ? bytes : 1), std::free);
            if (!a.buffer) throw std::bad_alloc();
            a.device_type = kDLCPU;
        } else {
            a.buffer = allocate(bytes);
            a.device = current_device();
        }
        a.shape = std::move(shape);
        a.strides.assign(a.shape.size(), 1);
        for (int i = int(a.shape.size()) - 2; i >= 0; --i) a.strides[i] = a.strides[i + 1] * a.shape[i + 1];
        a.bits = bits;
        return a;
    }
    template <class T>
    T* data() const {
        return reinterpret_cast<T*>(static_cast<char*>(buffer.get()) + byte_offset);
    }
    int64_t size() const {
        int64_t count = 1;
        for (int64_t n : shape) count *= n;
        return count;
    }
    bool contiguous() const {
        int64_t expected = 1;
        for (int i = int(shape.size()) - 1; i >= 0; --i) {
            if (shape[i] != 1 && strides[i] != expected) return false;
            expected *= shape[i];
        }
        return true;
    }
};

// What a capsule handed to a consumer owns: a reference to the buffer and the shape arrays.
struct Export {
    DLManagedTensor tensor;
    DeviceArray array;
};

inline py::capsule to_dlpack(const DeviceArray& a) {
    auto* e = new Export{{}, a};
    DLTensor& t = e->tensor.dl_tensor;
    t.data = a.buffer.get();
    t.byte_offset = a.byte_offset;
    t.device = {a.device_type, a.device};
    t.ndim = int32_t(a.shape.size());
    t.dtype = {uint8_t(kDLFloat), uint8_t(a.bits), 1};
    t.shape = e->array.shape.data();
    t.strides = e->array.strides.data();
    e->tensor.manager_ctx = e;
    e->tensor.deleter = [](DLManagedTensor* self) { delete static_cast<Export*>(self->manager_ctx); };
    // A capsule nobody consumed (still named "dltensor") frees the tensor itself.
    PyObject* capsule = PyCapsule_New(&e->tensor, "dltensor", [](PyObject* self) {
        if (!PyCapsule_IsValid(self, "dltensor")) return;
        auto* t = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(self, "dltensor"));
        t->deleter(t);
    });
    if (!capsule) {
        delete e;
        throw py::error_already_set();
    }
    return py::reinterpret_steal<py::capsule>(capsule);
}

// A consumed DLPack tensor of a producer (torch, CuPy, JAX): released when the call ends.
struct Borrowed {
    DLManagedTensor* tensor;
    explicit Borrowed(DLManagedTensor* t) : tensor(t) {}
    ~Borrowed() {
        if (tensor->deleter) tensor->deleter(tensor);
    }
    Borrowed(const Borrowed&) = delete;
    Borrowed& operator=(const Borrowed&) = delete;
};

// An argument before its dtype is known: a NumPy array, or a device array seen through DLPack.
struct Source {
    py::object object;
    std::shared_ptr<Borrowed> dl;  // null for NumPy arrays and DeviceArrays
    const DeviceArray* own = nullptr;  // a DeviceArray of gengrad's

    bool on_device() const { return dl || own; }
    std::vector<int64_t> shape() const {
        if (own) return own->shape;
        if (dl) return {dl->tensor->dl_tensor.shape, dl->tensor->dl_tensor.shape + dl->tensor->dl_tensor.ndim};
        const auto a = py::reinterpret_borrow<py::array>(object);
        return {a.shape(), a.shape() + a.ndim()};
    }
    int ndim() const { return int(shape().size()); }
};

inline bool is_device_array(const py::handle& obj) {
    return !py::isinstance<py::array>(obj) && py::hasattr(obj, "__dlpack_device__");
}

// Device arrays live in CUDA memory, or, for the host emulation, in CPU memory.
inline bool usable_device_type(int type, bool emulate) {
    return emulate ? type == kDLCPU : type == kDLCUDA || type == kDLCUDAManaged;
}

inline Source source(const py::handle& obj, const char* name, bool emulate) {
    Source s{py::reinterpret_borrow<py::object>(obj)};
    if (py::isinstance<py::array>(obj)) return s;
    if (py::isinstance<DeviceArray>(obj)) {
        s.own = &obj.cast<const DeviceArray&>();
        if (!usable_device_type(s.own->device_type, emulate))
            throw py::type_error(std::string(name) + " is a DeviceArray of " + (emulate ? "the GPU" : "the host emulation") +
                                 (emulate ? "; the host emulation takes host arrays" : "; the GPU takes GPU arrays"));
        return s;
    }
    if (!py::hasattr(obj, "__dlpack_device__"))
        throw py::type_error(std::string(name) + " must be a numpy array or a CUDA device array (an object with "
                             "__dlpack__, such as a CuPy array or a PyTorch or JAX array on the GPU), got " +
                             py::str(py::type::of(obj)).cast<std::string>());
    const auto device = obj.attr("__dlpack_device__")().cast<std::pair<int, int>>();
    if (!usable_device_type(device.first, emulate)) {
        if (emulate)
            throw py::type_error(std::string(name) + " is a DLPack array on device type " + std::to_string(device.first) +
                                 "; the host emulation takes NumPy arrays or DLPack arrays on the CPU");
        throw py::type_error(std::string(name) + " is a DLPack array on device type " + std::to_string(device.first) +
                             (device.first == kDLCPU ? " (the CPU)" : "") +
                             "; backend='cuda' takes NumPy arrays (copied to the GPU) or CUDA device arrays");
    }
    if (device.first == kDLCUDA && device.second != current_device())
        throw py::value_error(std::string(name) + " is on cuda:" + std::to_string(device.second) +
                              " but gengrad computes on cuda:" + std::to_string(current_device()));
    py::object capsule;
    if (emulate) {
        capsule = obj.attr("__dlpack__")();  // CPU arrays take no stream
    } else {
        try {
            // stream 1: the legacy default stream, on which gengrad computes; the producer
            // orders its pending work on the array before it
            capsule = obj.attr("__dlpack__")(py::arg("stream") = 1);
        } catch (py::error_already_set& error) {
            if (!error.matches(PyExc_TypeError)) throw;
            capsule = obj.attr("__dlpack__")();
        }
    }
    auto* tensor = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), "dltensor"));
    if (!tensor) throw py::error_already_set();
    PyCapsule_SetName(capsule.ptr(), "used_dltensor");
    s.dl = std::make_shared<Borrowed>(tensor);
    return s;
}

// An argument in memory the kernels read: device memory (or host memory when emulating).
template <class T>
struct Input {
    const T* data = nullptr;
    std::vector<int64_t> shape;
    Source keep;
    Buffer copy;
};

inline std::string dtype_name(int code, int bits) {
    if (code == kDLFloat && (bits == 32 || bits == 64)) return "float" + std::to_string(bits);
    return std::string(code == kDLInt ? "int" : code == kDLUInt ? "uint" : code == kDLFloat ? "float" : "code ") +
           std::to_string(bits);
}

template <class T>
void check_shape(const std::vector<int64_t>& actual, const char* name, const std::vector<int64_t>& shape) {
    bool ok = actual.size() == shape.size();
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || shape[i] == actual[i];
    if (!ok) throw py::value_error(std::string(name) + " must have shape " + shape_text(shape) + ", got " + shape_text(actual));
}

inline std::string bad_value_message(const char* name, bool nonnegative, int64_t index) {
    return std::string(name) + (nonnegative ? " contains NaN, Inf or a negative value" : " contains NaN or Inf") +
           " (first at flat index " + std::to_string(index) + ")";
}

// The NaN/Inf scans of a call's device arrays, run together once the call has read them all:
// one launch and one wait for the device instead of one per argument. (NumPy arrays are checked
// on the host as they are read.) A call must check() before it launches.
template <class T>
class Scans {
public:
    explicit Scans(bool emulate) : emulate_(emulate) {}

    void add(const T* p, int64_t n, bool nonnegative, const char* name) {
        if (targets_.size() == std::size_t(kMaxScanTargets)) throw std::logic_error("more inputs than Scans holds");
        targets_.push_back({p, n, nonnegative});
        names_.push_back(name);
    }

    // Raises ValueError for the first argument (in the order read) that holds a bad value.
    void check() const {
        const int count = int(targets_.size());
        int64_t first[kMaxScanTargets];
        if (emulate_) {
            for (int i = 0; i < count; ++i) {
                const ScanTarget<T>& t = targets_[i];
                first[i] = -1;
                for (int64_t j = 0; j < t.n && first[i] < 0; ++j)
                    if (!std::isfinite(t.p[j]) || (t.negative_too && t.p[j] < 0)) first[i] = j;
            }
        } else {
            py::gil_scoped_release release;
            first_bad(targets_.data(), count, first);
        }
        for (int i = 0; i < count; ++i)
            if (first[i] >= 0) throw py::value_error(bad_value_message(names_[i], targets_[i].negative_too, first[i]));
    }

private:
    bool emulate_;
    std::vector<ScanTarget<T>> targets_;
    std::vector<const char*> names_;
};

// `scans`: where a device array's scan for NaN and Inf (and negative values when `nonnegative`)
// is queued; null for outputs, which are not scanned.
template <class T>
Input<T> input(const Source& s, const char* name, const std::vector<int64_t>& shape, bool emulate, Scans<T>* scans,
               bool nonnegative = false) {
    Input<T> in;
    in.keep = s;
    if (!s.on_device()) {
        auto a = checked<T>(s.object, name, shape);  // dtype, shape, contiguity, finiteness
        in.shape.assign(a.shape(), a.shape() + a.ndim());
        const int64_t n = int64_t(a.size());
        if (nonnegative)
            for (int64_t i = 0; i < n; ++i)
                if (a.data()[i] < 0)
                    throw py::value_error(std::string(name) + " must be non-negative, got " + std::to_string(double(a.data()[i])) +
                                          " at flat index " + std::to_string(i));
        if (emulate) {
            in.data = a.data();
        } else {
            in.copy = allocate(a.nbytes());
            copy_to_device(in.copy.get(), a.data(), a.nbytes());
            in.data = static_cast<const T*>(in.copy.get());
        }
        return in;
    }
    int code = kDLFloat, bits = 0;
    bool contiguous = true;
    if (s.own) {
        bits = s.own->bits;
        in.shape = s.own->shape;
        contiguous = s.own->contiguous();
        in.data = s.own->data<T>();
    } else {
        const DLTensor& t = s.dl->tensor->dl_tensor;
        code = t.dtype.code;
        bits = t.dtype.lanes == 1 ? t.dtype.bits : 0;
        in.shape.assign(t.shape, t.shape + t.ndim);
        if (t.strides) {
            int64_t expected = 1;
            for (int i = t.ndim - 1; i >= 0; --i) {
                if (t.shape[i] != 1 && t.strides[i] != expected) contiguous = false;
                expected *= t.shape[i];
            }
        }
        in.data = reinterpret_cast<const T*>(static_cast<const char*>(t.data) + t.byte_offset);
    }
    if (code != kDLFloat || bits != int(8 * sizeof(T)))
        throw py::type_error(std::string(name) + " must have dtype float" + std::to_string(8 * sizeof(T)) +
                             " (the dtype of theta), got " + dtype_name(code, bits));
    check_shape<T>(in.shape, name, shape);
    if (!contiguous) throw py::value_error(std::string(name) + " must be C-contiguous");
    int64_t n = 1;
    for (int64_t e : in.shape) n *= e;
    if (scans) scans->add(in.data, n, nonnegative, name);
    return in;
}

// Where a result goes: `data` for the kernels; `finish()` copies it to a NumPy destination and
// returns the result object.
template <class T>
struct Output {
    T* data = nullptr;
    py::object result;
    Buffer staging;
    std::size_t bytes = 0;
    void* host = nullptr;  // NumPy destination of a device result

    py::object finish() const {
        if (host) {
            py::gil_scoped_release release;
            copy_to_host(host, data, bytes);
        }
        return result;
    }
};

template <class T>
Output<T> output(const std::vector<int64_t>& shape, bool device_result, bool emulate, const py::object& out = py::none(),
                 std::initializer_list<const void*> inputs = {}) {
    Output<T> o;
    int64_t count = 1;
    for (int64_t n : shape) count *= n;
    o.bytes = std::size_t(count) * sizeof(T);
    // A NumPy result: the kernels write a device buffer copied back into it (or, emulated, it).
    auto stage = [&](T* host) {
        if (emulate) {
            o.data = host;
        } else {
            o.staging = allocate(o.bytes);
            o.data = static_cast<T*>(o.staging.get());
            o.host = host;
        }
    };
    if (!out.is_none()) {
        if (is_device_array(out)) {
            Source s = source(out, "out", emulate);
            Input<T> view = input<T>(s, "out", shape, emulate, nullptr);
            o.data = const_cast<T*>(view.data);
            for (const void* p : inputs)
                if (p == o.data) throw py::value_error("out must not share memory with the inputs");
            o.result = out;
            return o;
        }
        if (!py::isinstance<py::array>(out) || !python::has_dtype<T>(py::reinterpret_borrow<py::array>(out)))
            throw py::type_error("out must be a numpy array with the dtype of theta, or a CUDA device array");
        auto a = py::reinterpret_borrow<py::array_t<T>>(out);
        check_shape<T>(std::vector<int64_t>(a.shape(), a.shape() + a.ndim()), "out", shape);
        if (!(a.flags() & py::array::c_style)) throw py::value_error("out must be C-contiguous");
        if (!a.writeable()) throw py::value_error("out must be writeable, got a read-only array");
        for (const void* p : inputs)
            if (p == a.data()) throw py::value_error("out must not share memory with the inputs");
        o.result = out;
        stage(a.mutable_data());
        return o;
    }
    if (device_result) {
        DeviceArray d = DeviceArray::make(shape, 8 * sizeof(T), emulate);
        o.data = d.data<T>();
        o.result = py::cast(std::move(d));
        return o;
    }
    py::array_t<T> a(shape);
    o.result = a;
    stage(a.mutable_data());
    return o;
}

inline int element_bits(const Source& s) {
    if (s.own) return s.own->bits;
    if (s.dl) {
        const DLDataType t = s.dl->tensor->dl_tensor.dtype;
        return t.code == kDLFloat && t.lanes == 1 ? t.bits : -1;
    }
    const py::array a = py::reinterpret_borrow<py::array>(s.object);
    if (python::has_dtype<float>(a)) return 32;
    if (python::has_dtype<double>(a)) return 64;
    return -1;
}

// Calls f(T{}) with T the scalar type of theta.
template <class F>
auto dispatch(const Source& theta, const char* name, F&& f) {
    switch (element_bits(theta)) {
        case 32: return f(float(0));
        case 64: return f(double(0));
        default: break;
    }
    throw py::type_error(std::string(name) + " must have dtype float32 or float64");
}

}  // namespace cuda
}  // namespace gengrad
