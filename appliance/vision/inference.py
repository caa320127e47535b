"""The only module that imports a TFLite runtime.

`ai_edge_litert` is preferred (64-bit Pi OS and x86, numpy 2); `tflite_runtime` 2.14 is the
fallback for 32-bit Raspberry Pi OS, the only platform it still has wheels for.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from appliance.errors import ModelError

try:  # pragma: no cover - which branch runs depends on the platform
    from ai_edge_litert.interpreter import Interpreter as _Interpreter

    RUNTIME = "ai_edge_litert"
except ModuleNotFoundError:  # pragma: no cover
    try:
        from tflite_runtime.interpreter import Interpreter as _Interpreter

        RUNTIME = "tflite_runtime"
    except ModuleNotFoundError:
        _Interpreter = None
        RUNTIME = "none"


RUNTIME_BANNER = b"Created TensorFlow Lite XNNPACK delegate"
"""The runtime's C++ code prints this INFO line to stderr for every model; it is noise in every command."""


@contextlib.contextmanager
def _without_runtime_banner() -> Iterator[None]:
    """Run a block with file descriptor 2 captured, then pass on what it wrote minus the banner line.

    The runtime writes from C++, below Python's sys.stderr, so only the descriptor can be captured.
    Anything else it prints (warnings, errors) still reaches stderr, after the block.
    """
    sys.stderr.flush()
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(True) if RUNTIME_BANNER not in line]
            if kept:
                os.write(2, b"".join(kept))


class TfliteModel:
    """A TFLite interpreter with one input and one or more outputs, built once and reused.

    Quantization of the input and outputs is handled here: `run` takes and returns float32
    arrays whatever the model's own tensor types are, unless the model's input is uint8 and the
    caller passes uint8 (then the bytes go in unchanged).
    """

    def __init__(self, path: Path, threads: int = 1, input_shape: tuple[int, ...] | None = None):
        if _Interpreter is None:
            raise ModelError(
                "No TFLite runtime is installed: run `pip install ai-edge-litert` "
                "(or `tflite-runtime` on 32-bit Raspberry Pi OS)."
            )
        try:
            with _without_runtime_banner():
                self._interpreter: Any = _Interpreter(model_path=str(path), num_threads=threads)
                if input_shape is not None:
                    index = self._interpreter.get_input_details()[0]["index"]
                    self._interpreter.resize_tensor_input(index, list(input_shape), strict=False)
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: cannot be loaded by {RUNTIME} ({exc}); run `make models`.") from exc
        self.path = path
        self._input = self._interpreter.get_input_details()[0]
        self._outputs = self._interpreter.get_output_details()

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of the input tensor as currently allocated."""
        return tuple(int(d) for d in self._input["shape"])

    @property
    def input_dtype(self) -> np.dtype[Any]:
        """Element type the model takes (float32, int8 or uint8)."""
        return np.dtype(self._input["dtype"])

    def resize(self, shape: tuple[int, ...]) -> None:
        """Reallocate for a new input shape (PNet takes one size per pyramid scale)."""
        if shape == self.input_shape:
            return
        self._interpreter.resize_tensor_input(self._input["index"], list(shape), strict=False)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]
        self._outputs = self._interpreter.get_output_details()

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one inference; returns the outputs in the model's order, as float32."""
        if tuple(x.shape) != self.input_shape:
            self.resize(tuple(x.shape))
        self._interpreter.set_tensor(self._input["index"], _quantize(x, self._input))
        self._interpreter.invoke()
        return [_dequantize(self._interpreter.get_tensor(o["index"]), o) for o in self._outputs]


def _quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return x.astype(np.float32, copy=False)
    if x.dtype == dtype:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    q = np.round(x.astype(np.float32) / scale + zero)
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if y.dtype == np.float32:
        return y
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale
