"""The TFLite adapter's console manners: every command loads models, so the runtime's per-model INFO
banner must not reach the user's terminal, while anything else the runtime prints still does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _stderr_of(code: str) -> str:
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return run.stderr


def test_loading_a_model_prints_no_runtime_banner():
    stderr = _stderr_of(
        "from pathlib import Path\n"
        "from appliance.vision.inference import TfliteModel\n"
        "TfliteModel(Path('models/embedder_int8.tflite'))\n"
    )
    assert "XNNPACK delegate" not in stderr


def test_other_output_on_descriptor_2_during_a_load_still_reaches_stderr():
    stderr = _stderr_of(
        "import os\n"
        "from appliance.vision import inference\n"
        "with inference._without_runtime_banner():\n"
        "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
        "    os.write(2, b'WARNING: something the owner must see\\n')\n"
    )
    assert stderr == "WARNING: something the owner must see\n"
