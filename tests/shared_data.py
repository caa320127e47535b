"""Where the public developer data sets are (../shared/data), and reading an image from them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def data_image(rel: str) -> np.ndarray:
    """RGB uint8 image from shared/data, or skip the test when the data set is absent."""
    path = DATA / rel
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared developer data set is not mounted)")
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
