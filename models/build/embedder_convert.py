"""Build the face-embedder models (float16 and full int8) from dlib's face-recognition ResNet.

Build venv only (TensorFlow, dlib). Writes models/embedder_f16.tflite, models/embedder_int8.tflite,
tests/golden/embedder_dlib.npz, and rewrites models/SHA256SUMS:

    .build-venv/bin/python -m models.build.embedder_convert [--calib-dir DIR] [--calib-limit N]

Source: `dlib_face_recognition_resnet_model_v1.dat` from the `face-recognition-models` 0.3.0 pip
package (CC0 1.0), read in pure Python (dlib_reader.py) and folded into constants (embedder_graph.py),
so the graph has no variables and full-int8 calibration needs no freezing step.

Both models take one 150x150 RGB chip aligned like dlib's `get_face_chip(img, shape, 150, 0.25)` and
return the raw 128-d descriptor (float32, not normalised):
  * f16: float32 input, pixels 0..255; float16 weights, float32 compute.
  * int8: uint8 input with scale 1 and zero point 0, so the chip's bytes go in unchanged; int8
    weights (per channel) and activations; float32 output.

Calibration (int8 activation ranges): chips cut with dlib's own detector, 5-point shape predictor and
get_face_chip from the images under --calib-dir, or by default from the face_recognition 1.3.0 sdist
test photos (plus their mirror images). A few hundred LFW images give wider, better ranges:
`--calib-dir ../shared/data/lfw`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from models.build.dlib_reader import read_dlib_resnet  # noqa: E402
from models.build.embedder_graph import fold, make_tf_function  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHIP = 150
PADDING = 0.25  # what dlib's compute_face_descriptor uses around the 5-point alignment
NAMES = {"f16": "embedder_f16.tflite", "int8": "embedder_int8.tflite"}
GOLDEN = ROOT / "tests" / "golden" / "embedder_dlib.npz"
# Golden chips: the sample photos (face_recognition 1.3.0 sdist); two people, one with three photos.
GOLDEN_PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def sample_photo_paths() -> dict[str, Path]:
    """The face_recognition sdist test photos by file name (fetched with pip into .cache/)."""
    try:
        from appliance.evaluation.samples import sample_photos
    except ImportError:  # the runtime helper is not there yet: same sdist, same photos
        from models.build.mtcnn import default_calibration_dir

        folder = default_calibration_dir()
        return {p.name: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    return dict(sample_photos())


class DlibReference:
    """dlib's detector, 5-point predictor, chip cutter and descriptor: the reference we match."""

    def __init__(self) -> None:
        import dlib
        import face_recognition_models as frm

        self.dat = Path(frm.face_recognition_model_location())
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.net = dlib.face_recognition_model_v1(str(self.dat))
        self._dlib = dlib

    def chip(self, rgb: np.ndarray, upsample: int = 1) -> np.ndarray | None:
        """dlib's aligned 150x150 chip of the largest face, or None when dlib finds no face."""
        rects = self.detector(rgb, upsample)
        if not rects:
            return None
        rect = max(rects, key=lambda r: r.area())
        return np.asarray(self._dlib.get_face_chip(rgb, self.predictor(rgb, rect), CHIP, PADDING))

    def descriptor(self, chip: np.ndarray) -> np.ndarray:
        """dlib's 128-d descriptor of a 150x150 chip (num_jitters 0)."""
        return np.asarray(self.net.compute_face_descriptor(np.ascontiguousarray(chip)), np.float32)


def read_rgb(path: Path) -> np.ndarray | None:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def calibration_chips(ref: DlibReference, calib_dir: Path | None, limit: int) -> np.ndarray:
    """(N, 150, 150, 3) uint8 chips for int8 calibration."""
    if calib_dir is None:
        paths = list(sample_photo_paths().values())
    else:
        paths = sorted(p for p in calib_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if len(paths) > limit:  # spread the picks over the whole folder, deterministically
            paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).astype(int)]
    chips = []
    for p in paths:
        rgb = read_rgb(p)
        chip = None if rgb is None else ref.chip(rgb)
        if chip is not None:
            chips.append(chip)
            if calib_dir is None:  # only a handful of sample photos: add their mirror images
                chips.append(chip[:, ::-1].copy())
    if not chips:
        raise SystemExit(f"{calib_dir or 'sample photos'}: dlib found no face to calibrate with")
    return np.stack(chips)


def convert(fn, variant: str, calib: np.ndarray | None = None) -> bytes:
    """TFLite flatbuffer of the constant-weight graph for one variant."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "f16":
        converter.target_spec.supported_types = [tf.float16]
    else:
        assert calib is not None
        full_range = calib[0].copy()
        # Pin the input range to exactly [0, 255] so the uint8 input has scale 1, zero point 0.
        full_range[0, 0] = 0
        full_range[0, 1] = 255
        samples = [full_range, *calib[1:]]

        def representative():
            for chip in samples:
                yield [chip[None].astype(np.float32)]

        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.float32
    return converter.convert()


def run_tflite(model: bytes, chips: np.ndarray) -> np.ndarray:
    """Descriptors of chips through a TFLite model, one chip per invoke (as the appliance runs it)."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=model, num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    if inp["dtype"] == np.uint8 and inp["quantization"] != (1.0, 0):
        raise SystemExit(f"uint8 input must have scale 1 and zero point 0, got {inp['quantization']}")
    rows = []
    for chip in chips:
        interp.set_tensor(inp["index"], chip[None].astype(inp["dtype"]))
        interp.invoke()
        rows.append(interp.get_tensor(out["index"])[0].astype(np.float32))
    return np.stack(rows)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--calib-dir", type=Path, help="images of faces for int8 calibration (default: sample photos)"
    )
    parser.add_argument("--calib-limit", type=int, default=300, help="at most this many calibration images")
    parser.add_argument("--out", type=Path, default=ROOT / "models")
    args = parser.parse_args(argv)

    ref = DlibReference()
    digest = hashlib.sha256(ref.dat.read_bytes()).hexdigest()
    print(f"source: {ref.dat.name} sha256 {digest}")
    ops = fold(read_dlib_resnet(ref.dat))
    fn = make_tf_function(ops)
    # int8 gets the space-to-depth stem (faster there, slower in float; see embedder_graph.py)
    fns = {"f16": fn, "int8": make_tf_function(ops, space_to_depth_stem=True)}

    photos = sample_photo_paths()
    golden_chips, names = [], []
    for name in GOLDEN_PHOTOS:
        chip = ref.chip(read_rgb(photos[name]))
        if chip is None:
            raise SystemExit(f"{photos[name]}: dlib found no face for the golden set")
        golden_chips.append(chip)
        names.append(name)
    chips = np.stack(golden_chips)
    reference = np.stack([ref.descriptor(c) for c in chips])
    for variant, graph in fns.items():
        float_out = np.concatenate([graph(c[None].astype(np.float32)).numpy() for c in chips])
        print(f"float32 graph for {variant} vs dlib: min cosine {cosines(float_out, reference).min():.8f}")

    calib = calibration_chips(ref, args.calib_dir, args.calib_limit)
    print(f"calibration: {len(calib)} chips from {args.calib_dir or 'the sample photos'}")
    held = calib[1::7][:40]  # a few calibration chips also serve as a wider parity check
    held_ref = np.stack([ref.descriptor(c) for c in held])

    args.out.mkdir(parents=True, exist_ok=True)
    for variant, name in NAMES.items():
        model = convert(fns[variant], variant, calib)
        (args.out / name).write_bytes(model)
        cos_golden = cosines(run_tflite(model, chips), reference)
        cos_held = cosines(run_tflite(model, held), held_ref)
        print(
            f"{name}: {len(model) / 1e6:.2f} MB; cosine vs dlib golden min {cos_golden.min():.6f} "
            f"mean {cos_golden.mean():.6f}; {len(held)} calibration chips min {cos_held.min():.6f} "
            f"mean {cos_held.mean():.6f}"
        )

    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(GOLDEN, chips=chips, descriptors=reference, names=np.array(names))
    print(f"golden: {GOLDEN.relative_to(ROOT)} ({GOLDEN.stat().st_size / 1e3:.0f} kB)")
    try:
        from models.build.manifest import write_manifest
    except ImportError:
        print("models/build/manifest.py is missing: SHA256SUMS not updated", file=sys.stderr)
    else:
        print(f"manifest: {write_manifest(args.out)}")


if __name__ == "__main__":
    main()
