"""Read dlib's face-recognition ResNet (`dlib_face_recognition_resnet_model_v1.dat`) in pure Python.

Build venv only. The file is dlib's `serialize(anet_type)`; dlib's C++ deserializer
(`dlib/dnn/core.h`, `layers.h`, `input.h`, `loss.h`, `cuda/tensor.h`) is the reference. Layout:

* integers: one byte `n | 0x80 if negative`, then n little-endian magnitude bytes;
* floats (scalars): integer mantissa, then integer exponent (value = m * 2**e);
* strings: integer length, then bytes;  bools: one ASCII byte '0'/'1';
* tensors: version 2, then num_samples, k, nr, nc, then raw little-endian float32 values.

The network nests outside-in: loss layer, then one version number per layer from the top down
to the input layer, then each layer's details bottom-up (so in forward order). Tag and skip
layers have no details: the residual wiring is known from dlib's `anet_type` and follows from the
detail sequence (see models/build/embedder_graph.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Layer:
    """One layer's details: its dlib type name and what the graph builder needs."""

    kind: str  # "input", "con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc"
    # con: (filters, nr, nc, stride_y, stride_x, pad_y, pad_x); pools: (nr, nc, sy, sx, pad_y, pad_x)
    ints: tuple[int, ...] = ()
    # con: (w[n, k, nr, nc], b[n]); affine: (gamma[k], beta[k]); fc: w[inputs, outputs]
    params: Any = field(default=None, repr=False)
    mean_rgb: tuple[float, float, float] | None = None  # input layer only: dlib's per-channel means


class _Cursor:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def int(self) -> int:
        head = self.data[self.pos]
        size = head & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if head & 0x80 else value

    def float(self) -> float:
        mantissa, exponent = self.int(), self.int()
        return float(np.ldexp(float(mantissa), exponent))

    def string(self) -> str:
        n = self.int()
        s = self.data[self.pos : self.pos + n].decode("ascii")
        self.pos += n
        return s

    def bools(self, n: int) -> None:
        chunk = self.data[self.pos : self.pos + n]
        if set(chunk) - {0x30, 0x31}:
            raise ValueError(f"expected {n} bools at byte {self.pos}, found {chunk!r}")
        self.pos += n

    def expect(self, value: int, what: str) -> None:
        got = self.int()
        if got != value:
            raise ValueError(f"{what}: expected {value}, found {got} at byte {self.pos}")

    def tensor(self) -> np.ndarray:
        self.expect(2, "tensor version")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos)
        self.pos += 4 * count
        return values.astype(np.float32).reshape(shape)

    def alias(self) -> tuple[int, ...]:
        self.expect(1, "alias_tensor version")
        return tuple(self.int() for _ in range(4))


def _trailer(c: _Cursor) -> None:
    """What add_layer writes after its layer's details: three flags and three (empty) tensors."""
    c.bools(3)
    for _ in range(3):
        c.tensor()


def read_dlib_resnet(path: Path) -> list[Layer]:
    """All layers with details, in forward order (input first, fc last)."""
    c = _Cursor(Path(path).read_bytes())
    c.expect(1, "add_loss_layer version")
    if c.string() != "loss_metric_2":
        raise ValueError(f"{path}: not a dlib metric-learning network")
    c.float(), c.float()  # margin and distance threshold: training only
    while c.int() != 3:  # one version per layer down to the input layer's add_layer (version 3)
        pass
    if (name := c.string()) != "input_rgb_image_sized":
        raise ValueError(f"{path}: unexpected input layer {name!r}")
    mean = (c.float(), c.float(), c.float())
    rows, cols = c.int(), c.int()
    layers = [Layer("input", (rows, cols), mean_rgb=mean)]
    while c.pos < len(c.data):
        name = c.string()
        if name == "con_4":
            params = c.tensor()
            ints = tuple(c.int() for _ in range(7))
            filt, bias = c.alias(), c.alias()
            for _ in range(4):  # learning-rate and weight-decay multipliers
                c.float()
            n, k, nr, nc = filt
            w = params.reshape(-1)[: n * k * nr * nc].reshape(n, k, nr, nc)
            b = params.reshape(-1)[n * k * nr * nc :][: bias[1]]
            layers.append(Layer("con", ints, params=(w, b)))
        elif name == "affine_":
            params = c.tensor().reshape(-1)
            c.alias(), c.alias()
            c.int()  # mode: 0 = per-channel (CONV_MODE)
            half = params.size // 2
            layers.append(Layer("affine", params=(params[:half], params[half:])))
        elif name == "relu_":
            layers.append(Layer("relu"))
        elif name in ("max_pool_2", "avg_pool_2"):
            layers.append(Layer(name[:-2], tuple(c.int() for _ in range(6))))
        elif name == "add_prev_":
            layers.append(Layer("add_prev"))
        elif name == "fc_2":
            outputs, inputs = c.int(), c.int()
            params = c.tensor().reshape(-1)
            c.alias(), c.alias()
            for _ in range(4):
                c.float()
            c.int()  # bias mode: FC_NO_BIAS
            w = params[: inputs * outputs].reshape(inputs, outputs)
            layers.append(Layer("fc", (inputs, outputs), params=w))
        else:
            raise ValueError(f"{path}: unknown layer {name!r} at byte {c.pos}")
        _trailer(c)
        if len(layers) == 2:  # the input's add_layer also stores its sample expansion factor
            c.expect(1, "sample expansion factor")
        if name == "fc_2":
            break
    return layers
