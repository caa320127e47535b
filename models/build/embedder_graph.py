"""dlib's face-recognition ResNet as a TensorFlow function with frozen (constant) weights.

Build venv only. Takes the layers from models/build/dlib_reader.py and folds what TFLite need not
compute at run time:

* the input layer's `(pixel - mean) / 256` into the first convolution (exact: that conv has no
  padding, so every tap sees a real pixel);
* every affine layer (dlib's inference form of batch norm) into the convolution before it.

The graph takes (N, 150, 150, 3) float32 RGB pixels in [0, 255] and returns (N, 128) float32, the
same (unnormalised) descriptor dlib's `compute_face_descriptor` returns for a 150x150 chip.

Residual wiring of dlib's `anet_type`: each block is con, affine, relu, con, affine, then for a
downsampling block an avg_pool of the block's input, then add_prev and relu. When the two tensors
of an add differ in size (the 3x3 vs 4x4 maps of the 256-channel stage, and channel counts at each
stage change), dlib zero-pads the smaller one at the bottom/right and in the extra channels.

Space-to-depth stem (int8 only): the first convolution (7x7, stride 2, 3 input channels) is rewritten
exactly as SPACE_TO_DEPTH(2) followed by a 4x4 stride-1 convolution on 12 channels. XNNPACK's int8
convolution packs input channels in groups of 8 or so, so 3 channels waste most of each multiply;
measured on this machine (one thread) the stem alone fell from 0.95 ms to 0.47 ms. In float32 the
rewrite is slower (0.43 -> 0.49 ms), so the f16 model keeps the plain convolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.build.dlib_reader import Layer


@dataclass
class Op:
    """One step of the folded network."""

    kind: str  # "conv", "relu", "max_pool", "avg_pool", "add", "mean", "fc"
    w: np.ndarray | None = None  # conv: HWIO; fc: (in, out)
    b: np.ndarray | None = None
    size: int = 0  # pool window / conv kernel
    stride: int = 1
    pad: int = 0
    block_start: bool = False  # conv that opens a residual block: remember its input


def fold(layers: list[Layer]) -> list[Op]:
    """Fold input normalisation and affine layers into convolutions; returns the op sequence."""
    if layers[0].kind != "input":
        raise ValueError("first layer must be the input layer")
    mean = np.asarray(layers[0].mean_rgb, np.float64)
    ops: list[Op] = []
    in_block = False
    prev = "input"
    for layer in layers[1:]:
        if layer.kind == "con":
            w, b = (np.asarray(a, np.float64) for a in layer.params)
            nr, nc, sy, sx, py, px = layer.ints[1:]
            assert w.shape[2:] == (nr, nc) and nr == nc and sy == sx and py == px
            if prev == "input":  # conv(x/256 - mean/256): scale taps, shift bias (no padding: exact)
                b = b - np.einsum("nkrc,k->n", w, mean) / 256.0
                w = w / 256.0
            start = not in_block and prev != "input"
            in_block = in_block or start
            ops.append(Op("conv", w.transpose(2, 3, 1, 0), b, size=nr, stride=sy, pad=py, block_start=start))
        elif layer.kind == "affine":
            gamma, beta = (np.asarray(a, np.float64) for a in layer.params)
            conv = ops[-1]
            assert conv.kind == "conv", "affine must follow a conv"
            conv.w = conv.w * gamma  # HWIO: output channel is the last axis
            conv.b = conv.b * gamma + beta
        elif layer.kind == "relu":
            ops.append(Op("relu"))
        elif layer.kind in ("max_pool", "avg_pool"):
            nr, nc, sy, sx, py, px = layer.ints
            if nr == 0:  # avg_pool_everything
                ops.append(Op("mean"))
            else:
                assert nr == nc and sy == sx and py == px == 0
                ops.append(Op(layer.kind, size=nr, stride=sy))
        elif layer.kind == "add_prev":
            ops.append(Op("add"))
            in_block = False
        elif layer.kind == "fc":
            ops.append(Op("fc", np.asarray(layer.params, np.float64)))
        prev = layer.kind
    for op in ops:
        op.w = None if op.w is None else op.w.astype(np.float32)
        op.b = None if op.b is None else op.b.astype(np.float32)
    return ops


def space_to_depth_kernel(w: np.ndarray, block: int = 2) -> np.ndarray:
    """HWIO kernel of a stride-`block` VALID conv as the kernel of a stride-1 VALID conv on the
    tf.nn.space_to_depth(block) of the same input (depth index = (dy * block + dx) * C + c).

    The kernel is zero-padded at the bottom/right to a multiple of `block`: the padded taps multiply
    real pixels by zero, so the result is exact.
    """
    k, _, c_in, c_out = w.shape
    kb = -(-k // block)
    padded = np.zeros((kb * block, kb * block, c_in, c_out), w.dtype)
    padded[:k, :k] = w
    # (a, dy, b, dx, c, o) -> (a, b, dy, dx, c, o) -> (a, b, (dy, dx, c), o)
    out = padded.reshape(kb, block, kb, block, c_in, c_out).transpose(0, 2, 1, 3, 4, 5)
    return out.reshape(kb, kb, block * block * c_in, c_out)


def make_tf_function(ops: list[Op], size: int = 150, batch: int | None = 1, space_to_depth_stem: bool = False):
    """A tf.function computing the folded network on (batch, size, size, 3) float32 pixels.

    space_to_depth_stem: compute the first (stride-2, unpadded) convolution as space-to-depth plus a
    stride-1 convolution (same result; faster in int8, see the module docstring).
    """
    import tensorflow as tf

    def pad_to(t, shape):
        # dlib's add_prev: align at the top-left, zero-fill the missing bottom/right and channels
        pads = [[0, 0]] + [[0, int(s) - int(d)] for s, d in zip(shape[1:], t.shape[1:], strict=True)]
        return t if not any(p[1] for p in pads) else tf.pad(t, pads)

    def forward(x):
        block_in = skip = None
        for op in ops:
            if op.kind == "conv":
                if op.block_start:
                    block_in, skip = x, None
                padding = "VALID" if op.pad == 0 else "SAME"
                assert op.pad in (0, op.size // 2) and (op.pad == 0 or op.stride == 1)
                if space_to_depth_stem and op is ops[0]:
                    # exact when the side is even and the kernel odd: both give (side - k) // 2 + 1
                    assert op.stride == 2 and op.pad == 0 and size % 2 == 0 and op.size % 2 == 1
                    w = space_to_depth_kernel(op.w, 2)
                    x = tf.nn.conv2d(tf.nn.space_to_depth(x, 2), tf.constant(w), 1, "VALID") + tf.constant(op.b)
                else:
                    x = tf.nn.conv2d(x, tf.constant(op.w), op.stride, padding) + tf.constant(op.b)
            elif op.kind == "relu":
                x = tf.nn.relu(x)
            elif op.kind == "max_pool":
                x = tf.nn.max_pool2d(x, op.size, op.stride, "VALID")
            elif op.kind == "avg_pool":  # pooled shortcut of a downsampling block
                skip = tf.nn.avg_pool2d(block_in, op.size, op.stride, "VALID")
            elif op.kind == "add":
                other = block_in if skip is None else skip
                shape = [max(int(a), int(b)) for a, b in zip(x.shape, other.shape, strict=True)]
                x = pad_to(x, shape) + pad_to(other, shape)
            elif op.kind == "mean":
                x = tf.reduce_mean(x, axis=[1, 2])
            elif op.kind == "fc":
                x = tf.matmul(x, tf.constant(op.w))
        return x

    spec = tf.TensorSpec([batch, size, size, 3], tf.float32, name="chip_rgb")
    return tf.function(forward, input_signature=[spec])
