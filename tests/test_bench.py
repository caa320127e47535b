"""The benchmark's pure helpers and its subprocess launcher; nothing here is timed."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from appliance.evaluation.bench import (
    check,
    format_row,
    letterbox,
    maxrss_mb,
    median_ms,
    random_gallery,
    run_child,
    steady_fps,
)


def test_median_ms_converts_seconds_and_takes_the_middle():
    assert median_ms([0.003, 0.001, 0.002]) == pytest.approx(2.0)
    assert median_ms([0.001, 0.002]) == pytest.approx(1.5)
    assert math.isnan(median_ms([]))


def test_letterbox_fits_and_centres_a_wide_frame():
    frame = np.full((360, 640, 3), 200, np.uint8)
    out = letterbox(frame, (640, 480))
    assert out.shape == (480, 640, 3) and out.dtype == np.uint8
    assert (out[:60] == 0).all() and (out[420:] == 0).all()  # 60-pixel bars above and below
    assert (out[60:420] == 200).all()


def test_letterbox_scales_a_large_tall_frame_down():
    out = letterbox(np.full((960, 480, 3), 7, np.uint8), (640, 480))
    assert out.shape == (480, 640, 3)
    assert (out[:, 200:440] == 7).all() and (out[:, :200] == 0).all() and (out[:, 440:] == 0).all()


def test_maxrss_units_per_platform():
    assert maxrss_mb(204800, "linux") == pytest.approx(200.0)
    assert maxrss_mb(200 * 1024 * 1024, "darwin") == pytest.approx(200.0)


def test_steady_fps_takes_off_the_one_frame_run():
    assert steady_fps(101, 12.0, 2.0) == pytest.approx(10.0)
    assert math.isnan(steady_fps(1, 2.0, 1.0))
    assert math.isnan(steady_fps(100, 1.0, 2.0))


def test_check_at_most_and_at_least():
    assert check(5.0, 10.0) == "ok"
    assert check(11.0, 10.0) == "MISS"
    assert check(30.0, 20.0, at_most=False) == "ok"
    assert check(float("nan"), 1.0) == "-"


def test_format_row_columns():
    row = format_row("detect", 9.876, "ms", "<= 10 ms", "ok")
    assert row.startswith("  detect ") and "9.88 ms" in row and row.endswith("<= 10 ms                 ok")
    assert "551 MiB" in format_row("rss", 550.7, "MiB")
    assert "n/a" in format_row("fps", float("nan"), "fps")


def test_random_gallery_unit_rows_five_per_user():
    matrix, names = random_gallery(12, dim=8)
    assert matrix.shape == (12, 8) and matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, rtol=1e-5)
    assert names[0] == names[4] != names[5] and len(set(names.tolist())) == 3


def test_run_child_reports_status_lines_and_memory():
    run = run_child([sys.executable, "-c", "print('a'); print('b', flush=True); raise SystemExit(3)"])
    assert run.returncode == 3
    assert [line for _, line in run.lines] == ["a", "b"]
    assert run.peak_rss_mb > 1 and run.wall_s >= 0


def test_liveness_is_timed_per_frame_on_consecutive_frames(cfg, detector, photos):
    from appliance.evaluation.bench import time_liveness
    from appliance.evaluation.walkup import head_and_shoulders, walkup_frames
    from appliance.vision.images import read_image

    image = read_image(photos["obama2.jpg"])
    frames = walkup_frames(head_and_shoulders(image, detector.detect(image)[0].box), n_frames=12)
    stage = [(f, faces[0]) for f in frames if len(faces := detector.detect(f)) == 1]
    assert len(stage) >= 6
    ms = time_liveness(cfg, stage, repeats=1)
    assert 0 < ms < 1000
    # The challenge is the passive check plus a yaw from the landmarks: about the same cost.
    assert 0 < time_liveness(cfg, stage, repeats=1, mode="challenge") < 1000
