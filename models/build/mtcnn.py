"""Build the int8 MTCNN detector models (PNet, RNet, ONet) from the weights the `mtcnn` pip package ships.

Build venv only (TensorFlow). Writes models/mtcnn_{pnet,rnet,onet}_{int8,f32}.tflite, then rewrites
models/SHA256SUMS.

    .build-venv/bin/python -m models.build.mtcnn [--calib-dir DIR] [--out models]

Variants: int8 is what the appliance runs; f32 is the package's graph unquantized, kept to measure what
quantization costs (`--variant f32` in the evaluation) and for CPUs where float is faster.

The int8 build converts a rewritten graph (`xnnpack_model`: PReLU as Mul+ReLU and Add, the two-class
softmax as a sigmoid, Flatten with a constant shape) that is the same function in float32 (checked here,
max |diff| ~1e-6) but that XNNPACK delegates whole in int8; the package's graph left PReLU, softmax and
the flatten reshape to TFLite's own kernels and made int8 slower than f32. See models/README.md.

Quantization: full integer (int8 weights and activations) with float32 input and outputs, so the
runtime feeds normalised pixels ((rgb - 127.5) / 128) and reads probabilities and offsets directly.
Activation ranges come from a representative set built the way the detector sees data: the image pyramid
for PNet, and for RNet and ONet the crops that the float pipeline of the `mtcnn` package proposes
(faces and non-faces alike).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from models.build.manifest import write_manifest  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
# Default calibration photos: the test and example images inside the face_recognition 1.3.0 sdist.
CALIB_SDIST = "face_recognition==1.3.0"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
MAX_SIDE = 640  # calibration images are scaled down to this, as a door camera frame would be
MIN_FACE = 20


def default_calibration_dir() -> Path:
    """Fetch the face_recognition sdist with pip into .cache/ and return its unpacked folder."""
    cache = ROOT / ".cache" / "calib"
    done = cache / ".unpacked"
    if not done.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(cache),
            ]
            + [CALIB_SDIST],
            check=True,
        )
        for archive in cache.glob("face_recognition-*.tar.gz"):
            with tarfile.open(archive) as tar:
                tar.extractall(cache, filter="data")
        done.touch()
    # Only the photos: the sdist also carries Sphinx icons, which are not faces or scenes.
    return cache / "face_recognition-1.3.0" / "tests" / "test_images"


def calibration_images(calib_dir: Path, limit: int) -> list[np.ndarray]:
    """Up to `limit` RGB uint8 images found under calib_dir, longest side at most MAX_SIDE."""
    paths = sorted(p for p in calib_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) > limit:  # spread the picks over the whole folder, deterministically
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).astype(int)]
    images = []
    for p in paths:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        scale = MAX_SIDE / max(bgr.shape[:2])
        if scale < 1:
            bgr = cv2.resize(bgr, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    if not images:
        raise SystemExit(f"{calib_dir}: no readable .jpg/.png images for calibration")
    return images


def keras_models() -> dict[str, object]:
    """The three networks as functional Keras models carrying the mtcnn package's weights."""
    import tensorflow as tf
    from mtcnn.network.onet import ONet
    from mtcnn.network.pnet import PNet
    from mtcnn.network.rnet import RNet
    from mtcnn.utils.tensorflow import load_weights

    out = {}
    for name, cls, shape in (
        ("pnet", PNet, (None, None, 3)),
        ("rnet", RNet, (24, 24, 3)),
        ("onet", ONet, (48, 48, 3)),
    ):
        net = cls()
        net.build()
        net.set_weights(load_weights(f"{name}.lz4"))
        inp = tf.keras.Input(shape=shape, batch_size=1 if name == "pnet" else None, name="image")
        out[name] = tf.keras.Model(inp, net(inp), name=name)
    return out


# The int8 graph is built from a rewritten copy of each network, so that XNNPACK runs all of it. In int8,
# XNNPACK (ai-edge-litert 2.3) takes neither PRELU nor SOFTMAX, nor the RESHAPE whose shape Keras' Flatten
# computes at run time (SHAPE/STRIDED_SLICE/PACK); every node it leaves out splits the graph and runs in
# TFLite's own, slower kernels (the old int8 PNet fell into 5 partitions, RNet 7, ONet 8). The rewrites
# are exact in real arithmetic; in float32 they agree with the package's graph to ~1e-6:
#   PReLU(x) = x + (1 - a) relu(-x) = x + d relu(c x) with c = -|1 - a| and d = sign(1 - a) per channel:
#       a Mul with the ReLU fused into it, an Add, and a Mul by d only in layers where some a > 1.
#       Not relu(x) + a min(x, 0), nor (1 - a) relu(x) + a x: int8 MINIMUM and stand-alone int8 RELU
#       (its output scale differs from its input's) are not delegated either. Not max(x, a x): it is
#       exact only for a <= 1 (PNet and RNet have some a > 1) and int8 MAXIMUM is not delegated.
#   softmax([u, v]) = [sigmoid(u - v), sigmoid(v - u)], the differences folded into the last layer.
#   Flatten -> reshape to (-1, n) with a constant shape.
# The f32 build keeps the package's own graph (and so stays bit-identical to earlier builds).


def _xnnpack_layers() -> tuple[type, type]:
    """The two custom layers of the rewrite (defined on demand: this module imports without TensorFlow)."""
    import tensorflow as tf

    class PReluAsMulAdd(tf.keras.layers.Layer):
        """PReLU with per-channel alpha as x + d * relu(c * x)."""

        def __init__(self, alpha: np.ndarray, **kwargs: object):
            super().__init__(**kwargs)
            a = np.asarray(alpha, np.float32).reshape(-1)
            self.c = -np.abs(1.0 - a)
            self.d = np.where(a > 1.0, -1.0, 1.0).astype(np.float32)

        def call(self, x: object) -> object:
            r = tf.nn.relu(x * tf.constant(self.c))  # the converter fuses the ReLU into the Mul
            return x + (r * tf.constant(self.d) if (self.d < 0).any() else r)

    class FlattenConst(tf.keras.layers.Layer):
        """Flatten to (-1, n) with n fixed, so the TFLite RESHAPE has a constant shape."""

        def __init__(self, n: int, **kwargs: object):
            super().__init__(**kwargs)
            self.n = int(n)

        def call(self, x: object) -> object:
            return tf.reshape(x, [-1, self.n])

    return PReluAsMulAdd, FlattenConst


HEADS = {"pnet": ("conv4_1", "conv4_2"), "rnet": ("fc5_1", "fc5_2"), "onet": ("fc6_1", "fc6_2", "fc6_3")}


def xnnpack_model(name: str, model: object) -> object:
    """`model` (from keras_models) rewritten so that its int8 conversion runs whole in XNNPACK."""
    import tensorflow as tf

    prelu_as_mul_add, flatten_const = _xnnpack_layers()
    layers = tf.keras.layers
    net = model.layers[1]
    heads = [getattr(net, h) for h in HEADS[name]]
    spec = model.inputs[0]
    inp = tf.keras.Input(shape=spec.shape[1:], batch_size=spec.shape[0], name="image")
    x = inp
    for layer in net.layers:  # in call order
        if any(layer is h for h in heads):
            continue
        if isinstance(layer, layers.PReLU):
            x = prelu_as_mul_add(layer.get_weights()[0], name=layer.name)(x)
        elif isinstance(layer, layers.Flatten):
            x = flatten_const(int(np.prod(x.shape[1:])), name=layer.name)(x)
        else:
            x = layer(x)
    outs = []
    for layer in heads:
        config = layer.get_config()
        if config["activation"] != "softmax":
            outs.append(layer(x))
            continue
        w, b = layer.get_weights()  # two classes: softmax is the sigmoid of the logit differences
        keep = ("filters", "kernel_size", "units", "strides", "padding")
        twin = type(layer)(
            **{k: v for k, v in config.items() if k in keep}, activation="sigmoid", name=layer.name
        )
        outs.append(twin(x))
        twin.set_weights(
            [
                np.stack([w[..., 0] - w[..., 1], w[..., 1] - w[..., 0]], -1),
                np.array([b[0] - b[1], b[1] - b[0]]),
            ]
        )
    return tf.keras.Model(inp, outs, name=name)


def max_abs_difference(a: object, b: object, inputs: list[np.ndarray]) -> float:
    """Largest |a(x) - b(x)| over inputs and outputs (outputs matched by their last dimension)."""
    worst = 0.0
    for x in inputs:
        ya = sorted((np.asarray(t) for t in a(x, training=False)), key=lambda t: t.shape[-1])
        yb = sorted((np.asarray(t) for t in b(x, training=False)), key=lambda t: t.shape[-1])
        worst = max(worst, *(float(np.abs(p - q).max()) for p, q in zip(ya, yb, strict=True)))
    return worst


def normalise(rgb: np.ndarray) -> np.ndarray:
    """The MTCNN input scaling: (pixel - 127.5) / 128, float32."""
    return (rgb.astype(np.float32) - 127.5) / 128.0


def pyramid_inputs(images: list[np.ndarray]) -> list[np.ndarray]:
    """PNet inputs: every pyramid level of every image, as (1, h, w, 3) float32."""
    from mtcnn.utils.images import build_scale_pyramid

    out = []
    for img in images:
        h, w = img.shape[:2]
        for s in build_scale_pyramid(w, h, min_face_size=MIN_FACE, scale_factor=0.709):
            size = (int(np.ceil(w * s)), int(np.ceil(h * s)))
            if min(size) < 12:
                continue
            out.append(normalise(cv2.resize(img, size, interpolation=cv2.INTER_AREA))[None])
    return out


def stage_crops(images: list[np.ndarray], per_image: int = 40) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """RNet (24x24) and ONet (48x48) inputs cropped where the float mtcnn pipeline proposes faces."""
    from mtcnn.stages import StagePNet, StageRNet
    from mtcnn.utils.images import extract_patches

    pnet, rnet = StagePNet(), StageRNet()
    rng = np.random.default_rng(0)
    r_crops, o_crops = [], []
    for img in images:
        norm = normalise(img)[None]
        shapes = np.asarray([img.shape])
        try:
            boxes = pnet(images_normalized=norm, images_oshapes=shapes, min_face_size=MIN_FACE)
        except Exception:  # the package raises from TF when a pyramid level finds nothing  # noqa: BLE001
            continue
        if len(boxes) == 0:
            continue
        pick = boxes[rng.permutation(len(boxes))[:per_image]]
        r_crops.extend(np.asarray(extract_patches(norm, pick, expected_size=(24, 24))))
        refined = rnet(images_normalized=norm, bboxes_batch=boxes.copy(), threshold_rnet=0.3)
        if len(refined):
            pick = refined[rng.permutation(len(refined))[:per_image]]
            o_crops.extend(np.asarray(extract_patches(norm, pick, expected_size=(48, 48))))
    return [c[None] for c in r_crops], [c[None] for c in o_crops]


def convert(model: object, samples: list[np.ndarray], quantize: bool = True) -> bytes:
    """Full-integer TFLite flatbuffer with float32 input and outputs (or all float32 if not quantize)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if not quantize:
        return converter.convert()

    def representative() -> Iterator[list[np.ndarray]]:
        for x in samples:
            yield [x]

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def main(argv: list[str] | None = None) -> int:
    """Build the three models; returns 0."""
    parser = argparse.ArgumentParser(prog="python -m models.build.mtcnn", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calib-dir", type=Path, help="folder of face photos (default: face_recognition sdist)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "models", help="where to write the .tflite files")
    parser.add_argument(
        "--variant", choices=("int8", "f32"), action="append", help="build only this (repeatable)"
    )
    parser.add_argument("--limit", type=int, default=60, help="most calibration images to use")
    args = parser.parse_args(argv)
    variants = args.variant or ["int8", "f32"]

    import tensorflow as tf

    tf.random.set_seed(0)
    calib_dir = args.calib_dir or default_calibration_dir()
    images = calibration_images(calib_dir, args.limit)
    print(f"calibration: {len(images)} images from {calib_dir}")
    models = keras_models()
    r_crops, o_crops = stage_crops(images)
    samples = {"pnet": pyramid_inputs(images), "rnet": r_crops, "onet": o_crops}
    for name, model in models.items():
        if not samples[name]:
            raise SystemExit(f"no calibration samples for {name}; use a --calib-dir with face photos")
        for variant in variants:
            path = args.out / f"mtcnn_{name}_{variant}.tflite"
            graph = model
            if variant == "int8":
                graph = xnnpack_model(name, model)
                check = samples[name][:: max(1, len(samples[name]) // 50)]
                diff = max_abs_difference(model, graph, check)
                print(f"{name}: rewritten graph vs package graph, float32: max |diff| {diff:.2e}")
                if diff > 1e-4:
                    raise SystemExit(f"{name}: the XNNPACK rewrite changed the float outputs by {diff}")
            path.write_bytes(convert(graph, samples[name], quantize=variant == "int8"))
            print(f"{path.name}: {path.stat().st_size} bytes, {len(samples[name])} calibration samples")
    write_manifest(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
