"""Export a trained head (numpy weights, .npz) to a float32 TFLite file, and check it against numpy.

Build venv only (TensorFlow):

    .build-venv/bin/python -m models.build.learning.export HEAD.npz OUT.tflite

The .npz holds `kind` ("linear" or "mlp") and the head's parameters by name (heads.py). The TFLite
graph takes one (1, 128) float32 embedding and returns the head's (1, 128) unit vector. After writing
it runs the file through TensorFlow's interpreter on 256 random unit vectors and exits non-zero if any
output differs from `Head.apply` by more than 1e-5.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from models.build.learning.heads import HEADS, Head

TOLERANCE = 1e-5


def save_head(head: Head, path: Path) -> None:
    """Write a head's kind and parameters to an .npz file."""
    np.savez(path, kind=np.array(head.kind), **{k: v for k, v in head.params.items()})


def load_head(path: Path) -> Head:
    """Read a head written by `save_head`."""
    data = np.load(path, allow_pickle=False)
    kind = str(data["kind"])
    return HEADS[kind]({k: np.asarray(data[k], dtype=np.float64) for k in data.files if k != "kind"})


def to_tflite(head: Head) -> bytes:
    """The head as a float32 TFLite flatbuffer: input (1, D) float32, output (1, D) unit float32."""
    import tensorflow as tf

    p = {k: tf.constant(v.astype(np.float32)) for k, v in head.params.items()}
    dim = next(iter(head.params.values())).shape[-1]

    @tf.function(input_signature=[tf.TensorSpec([1, dim], tf.float32, name="embedding")])
    def fn(x: tf.Tensor) -> tf.Tensor:
        if head.kind == "linear":
            h = tf.matmul(x, p["W"], transpose_b=True) + p["b"]
        else:
            hidden = tf.nn.relu(tf.matmul(x, p["W1"], transpose_b=True) + p["b1"])
            h = x + tf.matmul(hidden, p["W2"], transpose_b=True) + p["b2"]
        return tf.math.l2_normalize(h, axis=1)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    return converter.convert()


def run_tflite(model: bytes, x: np.ndarray) -> np.ndarray:
    """Outputs of the TFLite head for each row of x, one row per invoke (as the appliance would run it)."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=model, num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    rows = []
    for row in x.astype(np.float32):
        interp.set_tensor(inp["index"], row[None])
        interp.invoke()
        rows.append(interp.get_tensor(out["index"])[0].copy())
    return np.stack(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m models.build.learning.export", description=__doc__.splitlines()[0]
    )
    parser.add_argument("head", type=Path, help="head weights (.npz from save_head)")
    parser.add_argument("out", type=Path, help="TFLite file to write")
    args = parser.parse_args(argv)
    head = load_head(args.head)
    model = to_tflite(head)
    args.out.write_bytes(model)
    rng = np.random.default_rng(0)
    dim = head.params["b"].size if "b" in head.params else head.params["b2"].size
    x = rng.normal(size=(256, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    err = float(np.abs(run_tflite(model, x) - head.apply(x)).max())
    print(f"wrote {args.out} ({len(model)} bytes); max |TFLite - numpy| = {err:.2e} over 256 vectors")
    return 0 if err <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
