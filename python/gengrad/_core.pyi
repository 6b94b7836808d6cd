# Types of the compiled extension (cpp/python/bindings.cpp, cpp/python/model.hpp). Arrays are
# float32 or float64 (theta's dtype decides) and are checked in C++ for dtype, shape,
# contiguity and finiteness.
from collections.abc import Sequence
from typing import Any, Optional, TypedDict

import numpy as np
from numpy.typing import NDArray

class Model:
    def __init__(self, widths: Sequence[int], activation: int, kinks: Sequence[float],
                 slopes: Sequence[float], offset: float, right_sided: Sequence[bool],
                 loss: int) -> None: ...
    @property
    def dim(self) -> int: ...
    @property
    def widths(self) -> list[int]: ...
    def layout(self) -> list[list[int]]: ...
    def pre_activations(self, theta: NDArray[Any], X: NDArray[Any], first: int) -> NDArray[Any]: ...
    def risk_gradient(self, theta: NDArray[Any], X: NDArray[Any], Y: NDArray[Any],
                      sample_weight: Optional[NDArray[Any]], family: int, r: float,
                      want_gradient: bool, out: Optional[NDArray[Any]]
                      ) -> tuple[float, Optional[NDArray[Any]]]: ...
    def kink_counts(self, theta: NDArray[Any], X: NDArray[Any]) -> NDArray[np.int64]: ...
    def ensemble_pre_activations(self, thetas: NDArray[Any], X: NDArray[Any], first: int) -> NDArray[Any]: ...
    def ensemble_kink_counts(self, thetas: NDArray[Any], X: NDArray[Any]) -> NDArray[np.int64]: ...
    def ensemble_risk_gradient(self, thetas: NDArray[Any], X: NDArray[Any], Y: NDArray[Any],
                               sample_weight: Optional[NDArray[Any]], family: int, r: float,
                               want_gradient: bool, out: Optional[NDArray[Any]]
                               ) -> tuple[NDArray[np.float64], Optional[NDArray[Any]]]: ...

def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
MAX_THREADS: int
def set_thread_limit(n: int) -> None: ...
def get_thread_limit() -> int: ...
def workspace_bytes() -> int: ...
ACTIVATION_CODES: dict[str, int]
FAMILY_CODES: dict[str, int]
LOSS_CODES: dict[str, int]
MAX_LAYERS: int
def select_isa(isa: str) -> str: ...
def select_weight_panels(policy: str) -> str: ...
def build_info() -> dict[str, Any]: ...

class FlowOptions(TypedDict):
    """The options flow() and flow_ensemble() take (cpp/flow/flow.hpp, Options)."""
    t_end: float
    rtol: float
    atol: float
    first_step: float
    max_step: float
    max_steps: int
    event_nodes: int
    dense_output: bool
    save_steps: bool
    t_eval: Optional[NDArray[np.float64]]
    gtol: float
    method: str

class FlowRaw(TypedDict):
    """What flow() returns (cpp/python/bindings_flow.cpp); a type-checking name only."""
    t: NDArray[np.float64]
    theta: NDArray[np.float64]
    risk: NDArray[np.float64]
    eval_theta: NDArray[np.float64]
    eval_risk: NDArray[np.float64]
    dense_t: NDArray[np.float64]
    dense_h: NDArray[np.float64]
    dense_stop: NDArray[np.float64]
    dense_coefficients: NDArray[np.float64]
    initial_pieces: NDArray[np.int8]
    final_theta: NDArray[np.float64]
    final_risk: float
    t_final: float
    event_t: NDArray[np.float64]
    event_layer: NDArray[np.int64]
    event_sample: NDArray[np.int64]
    event_neuron: NDArray[np.int64]
    event_kink: NDArray[np.int32]
    event_kind: NDArray[np.int32]
    event_from: NDArray[np.int32]
    event_to: NDArray[np.int32]
    n_gradient: int
    n_forward: int
    n_tangent: int
    n_unit: int
    n_steps: int
    n_rejected: int
    n_grazing: int
    success: bool
    stationary: bool
    message: str

def flow(model: Model, theta0: NDArray[np.float64], X: NDArray[np.float64], Y: NDArray[np.float64],
         sample_weight: Optional[NDArray[np.float64]], options: FlowOptions) -> FlowRaw: ...
def flow_ensemble(model: Model, theta0: NDArray[np.float64], X: NDArray[np.float64], Y: NDArray[np.float64],
                  sample_weight: Optional[NDArray[np.float64]], options: FlowOptions) -> list[FlowRaw]: ...
