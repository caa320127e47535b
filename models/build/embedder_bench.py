"""Time the face embedder as the appliance runs it (runtime venv; no TensorFlow, no dlib).

    .venv/bin/python -m models.build.embedder_bench [--threads 1] [--runs 200]

Prints, per variant, milliseconds per face for embed_chips (one 150x150 chip per invoke: TFLite
plus the L2 normalisation), and for align_face on a real photo. Median and 90th percentile over
--runs calls after a warm-up.

Then the float floor on this CPU: the network's multiply-adds per face, the single-thread float32
matrix-multiply rate numpy's BLAS reaches here, and so the least time any float32 kernel could take;
and the f16 model run with XNNPACK's float16 arithmetic (LiteRT's CompiledModel with the FORCE_FP16
flag, which the appliance's Interpreter API cannot set), with its cosine to the float32 result.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # the float peak below is for one thread

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from appliance.vision.align import TEMPLATE_150, align_face  # noqa: E402
from appliance.vision.embedder import VARIANTS, TfliteEmbedder  # noqa: E402
from appliance.vision.model_files import MODELS_DIR  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "golden" / "embedder_dlib.npz"


def timings(fn, runs: int, warmup: int = 10) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(runs)
    for i in range(runs):
        t0 = time.perf_counter()
        fn()
        out[i] = (time.perf_counter() - t0) * 1e3
    return out


def multiply_adds(path: Path) -> int:
    """Multiply-adds of one invoke: the CONV_2D and FULLY_CONNECTED ops of the model's graph."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(
        model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    it.allocate_tensors()
    shapes = {t["index"]: t["shape"] for t in it.get_tensor_details()}
    total = 0
    for op in it._get_ops_details():  # noqa: SLF001 - the op list is not public
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED"):
            weights, out = shapes[op["inputs"][1]], shapes[op["outputs"][0]]
            total += int(np.prod(out)) * int(np.prod(weights[1:]))
    return total


def sgemm_gmacs(n: int = 2048, runs: int = 5) -> float:
    """Float32 multiply-adds per second (x 1e9) of numpy's matrix product on one thread."""
    a = np.random.default_rng(0).random((n, n), np.float32)
    a @ a
    t0 = time.perf_counter()
    for _ in range(runs):
        a @ a
    return n**3 * runs / (time.perf_counter() - t0) / 1e9


def fp16_arithmetic_ms(path: Path, chip: np.ndarray, runs: int) -> tuple[np.ndarray, float] | None:
    """Times and cosine to float32 of `path` run with XNNPACK's float16 arithmetic; None if unavailable."""
    try:
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_litert.options import CpuOptions, Options
    except ImportError:
        return None
    qs8_qu8_force_fp16 = 0x1 | 0x2 | 0x4  # TFLITE_XNNPACK_DELEGATE_FLAG_{QS8,QU8,FORCE_FP16}
    options = Options(cpu_options=CpuOptions(num_threads=1, xnnpack_flags=qs8_qu8_force_fp16))
    try:
        model = CompiledModel.from_file(str(path), options=options)
    except RuntimeError:  # e.g. a CPU without float16 support in XNNPACK
        return None
    inputs, outputs = model.create_input_buffers(0), model.create_output_buffers(0)
    x = chip.astype(np.float32)[None]
    inputs[0].write(x.reshape(-1))
    ms = timings(lambda: model.run_by_index(0, inputs, outputs), runs)
    fp16 = outputs[0].read(128, np.float32).reshape(-1)
    reference = Interpreter(model_path=str(path), num_threads=1)
    reference.allocate_tensors()
    reference.set_tensor(reference.get_input_details()[0]["index"], x)
    reference.invoke()
    fp32 = reference.get_tensor(reference.get_output_details()[0]["index"]).reshape(-1)
    return ms, float(fp16 @ fp32 / np.linalg.norm(fp16) / np.linalg.norm(fp32))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args(argv)
    chips = np.load(GOLDEN)["chips"]
    for variant in VARIANTS:
        t0 = time.perf_counter()
        embedder = TfliteEmbedder(variant=variant, threads=args.threads)
        load = (time.perf_counter() - t0) * 1e3
        ms = timings(lambda e=embedder: e.embed_chips(chips[:1]), args.runs)
        print(
            f"embed {variant:4s} threads={args.threads}: median {np.median(ms):.2f} ms/face, "
            f"p90 {np.percentile(ms, 90):.2f} ms (load {load:.0f} ms)"
        )
    f16 = MODELS_DIR / VARIANTS["f16"]
    mmac = multiply_adds(f16) / 1e6
    peak = sgemm_gmacs()
    print(
        f"float work: {mmac:.0f} M multiply-adds per face; numpy float32 matrix product on one thread: "
        f"{peak:.0f} G multiply-adds/s -> at least {mmac / peak:.2f} ms per face in float32 arithmetic"
    )
    fp16 = fp16_arithmetic_ms(f16, chips[0], args.runs)
    if fp16 is None:
        print("f16 with float16 arithmetic: not available (needs ai-edge-litert's CompiledModel API)")
    else:
        ms, cosine = fp16
        print(
            f"embed f16 with XNNPACK float16 arithmetic (FORCE_FP16): median {np.median(ms):.2f} ms/face, "
            f"p90 {np.percentile(ms, 90):.2f} ms, cosine to float32 {cosine:.6f}"
        )
    # Alignment on a 640x480 frame with the face at about door-camera size.
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
    landmarks = TEMPLATE_150 * 1.2 + [250, 120]
    ms = timings(lambda: align_face(frame, landmarks), args.runs)
    print(f"align_face 640x480 frame: median {np.median(ms):.3f} ms, p90 {np.percentile(ms, 90):.3f} ms")


if __name__ == "__main__":
    main()
