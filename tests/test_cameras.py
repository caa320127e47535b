"""Frame sources: real video decoding of generated and shared files, and the live-camera engine with
fake captures (newest-frame hand-off and reconnect backoff, with no real waiting)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from shared_data import DATA as SHARED

from appliance.errors import CameraError
from appliance.hardware.cameras import open_source
from appliance.hardware.cameras.live import LiveSource
from appliance.hardware.cameras.opencv_camera import OpenCvCamera, describe
from appliance.hardware.cameras.picamera import yuv420_to_rgb
from appliance.hardware.cameras.replay import ReplaySource

HAMILTON = SHARED / "video" / "short_hamilton_clip.mp4"
GRID = SHARED / "video" / "grid"

W, H = 64, 48


def write_video(path: Path, n: int, fps: float = 10.0, fourcc: str = "mp4v") -> Path:
    """A small video of pure-red frames (BGR (0, 0, 255)) whose green level counts the frames."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    assert writer.isOpened(), f"this OpenCV cannot write {fourcc}"
    for i in range(n):
        bgr = np.zeros((H, W, 3), np.uint8)
        bgr[..., 2] = 255
        bgr[: H // 2, :, 1] = min(10 * i, 250)  # top half: a frame counter in the green channel
        writer.write(bgr)
    writer.release()
    return path


def truncate(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


# --- replay: videos -------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "fourcc"), [(".mp4", "mp4v"), (".avi", "MJPG")])
def test_replay_video_counts_times_and_rgb_order(tmp_path, suffix, fourcc):
    video = write_video(tmp_path / f"red{suffix}", n=12, fps=10.0, fourcc=fourcc)
    frames = list(ReplaySource(video).frames())
    assert [f.index for f in frames] == list(range(12))
    assert [f.t for f in frames] == pytest.approx([i / 10.0 for i in range(12)])
    image = frames[0].image
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    bottom = image[H // 2 + 4 :].reshape(-1, 3).mean(axis=0)
    assert bottom[0] > 200 and bottom[1] < 40 and bottom[2] < 40, bottom  # red is channel 0
    # The frames come out in recorded order (green counter grows).
    greens = [float(f.image[: H // 4, :, 1].mean()) for f in frames]
    assert greens == sorted(greens) and greens[-1] - greens[0] > 60


def test_replay_can_iterate_twice(tmp_path):
    source = ReplaySource(write_video(tmp_path / "v.mp4", n=5))
    assert len(list(source.frames())) == len(list(source.frames())) == 5


def test_replay_realtime_paces_to_recorded_rate(tmp_path):
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    source = ReplaySource(
        write_video(tmp_path / "v.mp4", n=4, fps=5.0), realtime=True, clock=lambda: now[0], sleep=sleep
    )
    ts = [f.t for f in source.frames()]
    assert ts == pytest.approx([0.0, 0.2, 0.4, 0.6])
    assert slept == pytest.approx([0.2, 0.2, 0.2])  # frame 0 is due at once


def test_replay_close_stops_iteration(tmp_path):
    source = ReplaySource(write_video(tmp_path / "v.mp4", n=10))
    taken = []
    for frame in source.frames():
        taken.append(frame.index)
        source.close()
    assert taken == [0]


def test_corrupt_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "random.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(CameraError, match=r"random\.mp4 cannot be decoded.*re-encode it with ffmpeg") as info:
        ReplaySource(bad)
    assert "\n" not in str(info.value)


def test_text_file_named_mp4_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n")
    with pytest.raises(CameraError, match="cannot be decoded"):
        ReplaySource(bad)


def test_truncated_mp4_without_its_index_cannot_be_decoded(tmp_path):
    # OpenCV's writer puts the mp4 index (moov) at the end: 30% of the bytes has none.
    video = write_video(tmp_path / "full.mp4", n=20)
    cut = truncate(video, tmp_path / "cut.mp4", 0.3)
    with pytest.raises(CameraError, match=r"cut\.mp4 cannot be decoded"):
        ReplaySource(cut)


def test_truncated_avi_keeps_decoded_frames_and_warns(tmp_path, caplog):
    # An AVI has its header first, so a cut file still plays up to the cut.
    video = write_video(tmp_path / "full.avi", n=20, fourcc="MJPG")
    cut = truncate(video, tmp_path / "cut.avi", 0.7)
    with caplog.at_level(logging.WARNING, logger="appliance.hardware.cameras.replay"):
        frames = list(ReplaySource(cut).frames())
    assert 0 < len(frames) < 20
    assert f"after {len(frames)} of 20 frames" in caplog.text


def test_whole_video_does_not_warn(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert len(list(ReplaySource(write_video(tmp_path / "v.avi", n=8, fourcc="MJPG")).frames())) == 8
    assert caplog.text == ""


@pytest.mark.skipif(not HAMILTON.exists(), reason=f"shared data not present: {HAMILTON}")
def test_shared_clip_replays_every_frame():
    frames = list(ReplaySource(HAMILTON).frames())
    assert len(frames) == 275
    assert frames[-1].t == pytest.approx(274 / 29.97, abs=1e-3)
    assert frames[0].image.shape[1] == 640


@pytest.mark.skipif(not HAMILTON.exists(), reason=f"shared data not present: {HAMILTON}")
def test_truncated_shared_clip_is_a_clear_error(tmp_path):
    cut = truncate(HAMILTON, tmp_path / "hamilton_30pct.mp4", 0.3)
    with pytest.raises(CameraError, match="cannot be decoded"):
        ReplaySource(cut)


@pytest.mark.skipif(not GRID.exists(), reason=f"shared data not present: {GRID}")
def test_shared_grid_clip_and_its_truncation(tmp_path):
    clip = sorted(GRID.glob("*.mpg"))[0]
    full = list(ReplaySource(clip).frames())
    assert len(full) == 75 and full[1].t == pytest.approx(1 / 25)
    # MPEG program streams have no index: a cut file plays up to the cut, fewer frames.
    cut = list(ReplaySource(truncate(clip, tmp_path / "cut.mpg", 0.3)).frames())
    assert 0 < len(cut) < len(full)


# --- replay: images -------------------------------------------------------------------------


def write_pngs(folder: Path, n: int) -> list[Path]:
    folder.mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        bgr = np.zeros((H, W, 3), np.uint8)
        bgr[..., 0] = 255  # pure blue in BGR
        bgr[0, 0, 1] = i
        path = folder / f"{i:03d}.png"
        assert cv2.imwrite(str(path), bgr)
        paths.append(path)
    return paths


def test_folder_of_pngs_in_name_order(tmp_path):
    write_pngs(tmp_path / "frames", 3)
    (tmp_path / "frames" / "README.txt").write_text("ignored: no image extension")
    (tmp_path / "frames" / ".DS_Store").write_bytes(b"\0\1")
    frames = list(ReplaySource(tmp_path / "frames", image_fps=4.0).frames())
    assert [int(f.image[0, 0, 1]) for f in frames] == [0, 1, 2]
    assert [f.t for f in frames] == [0.0, 0.25, 0.5]
    assert frames[0].image[5, 5].tolist() == [0, 0, 255]  # blue is channel 2 in RGB


def test_text_file_named_jpg_in_folder_is_a_clear_error(tmp_path):
    write_pngs(tmp_path / "frames", 2)
    (tmp_path / "frames" / "001b.jpg").write_text("not really a jpeg")
    with pytest.raises(CameraError, match=r"001b\.jpg is not an image.*remove or replace it") as info:
        ReplaySource(tmp_path / "frames")
    assert "\n" not in str(info.value)


def test_single_image_and_empty_folder(tmp_path):
    [png] = write_pngs(tmp_path / "frames", 1)
    assert len(list(ReplaySource(png).frames())) == 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraError, match="holds no images"):
        ReplaySource(tmp_path / "empty")


def test_missing_path(tmp_path):
    with pytest.raises(CameraError, match="does not exist"):
        ReplaySource(tmp_path / "nope.mp4")
    with pytest.raises(CameraError, match="no such file or folder"):
        open_source(str(tmp_path / "nope.mp4"))


# --- open_source --------------------------------------------------------------------------


def test_open_source_picks_replay_for_paths(tmp_path):
    source = open_source(str(write_video(tmp_path / "v.mp4", n=3)), realtime=False)
    assert isinstance(source, ReplaySource)
    assert len(list(source.frames())) == 3


def test_open_source_missing_usb_camera_is_a_clear_error():
    with pytest.raises(CameraError, match=r"cannot open camera usb:63: .*video' group"):
        open_source("usb:63")


def test_open_source_picamera_without_picamera2():
    try:
        import picamera2  # noqa: F401
    except ImportError:
        with pytest.raises(CameraError, match="install python3-picamera2 with apt.*--system-site-packages"):
            open_source("picamera")
    else:
        pytest.skip("picamera2 is installed here")


def test_describe_hides_stream_passwords():
    assert describe("rtsp://admin:secret@10.0.0.5:554/stream1") == "rtsp://admin:***@10.0.0.5:554/stream1"
    assert describe(2) == "usb:2"


# --- live engine ----------------------------------------------------------------------------


def numbered(i: int) -> np.ndarray:
    return np.full((4, 4, 3), i, np.uint8)


class GatedCapture:
    """Delivers frames 1..n as fast as asked, then blocks until released (a camera at rest)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.calls = 0
        self.all_delivered = threading.Event()
        self.unblock = threading.Event()
        self.released = False

    def read(self):
        self.calls += 1
        if self.calls > self.n:
            # Reached only after frame n has been published.
            self.all_delivered.set()
            self.unblock.wait()
            return False, None
        return True, numbered(self.calls)

    def release(self) -> None:
        self.released = True


def test_reader_thread_drops_stale_frames():
    capture = GatedCapture(n=5)
    source = LiveSource(lambda: capture, name="fake", sleep=lambda s: None)
    try:
        assert capture.all_delivered.wait(timeout=10)
        frames = source.frames()
        newest = next(frames)
        # Five frames arrived while nobody was looking: only the last is handed over.
        assert int(newest.image[0, 0, 0]) == 5 and newest.index == 4
    finally:
        capture.unblock.set()
        source.close()
    assert list(frames) == []  # closed: nothing stale left to yield
    assert capture.released


class Script:
    """Opens succeed or fail as scripted; reads follow a script of frames and failures."""

    def __init__(self, opens: list[bool], reads: list[bool]) -> None:
        self.opens = list(opens)
        self.reads = list(reads)
        self.opened = 0
        self.released = 0

    def open(self) -> Script:
        if not self.opens.pop(0):
            raise CameraError("camera unplugged")
        self.opened += 1
        return self

    def read(self):
        ok = self.reads.pop(0)
        return (True, numbered(len(self.reads))) if ok else (False, None)

    def release(self) -> None:
        self.released += 1


def test_reconnect_backoff_doubles_caps_and_resets(caplog):
    script = Script(opens=[True, False, False, False, False, True, True], reads=[True, False, True, False])
    waits: list[float] = []
    source = LiveSource(
        script.open,
        name="fake",
        reconnect_initial_s=0.5,
        reconnect_max_s=3.0,
        sleep=waits.append,
        start=False,
    )
    with caplog.at_level(logging.INFO, logger="appliance.hardware.cameras.live"):
        for _ in range(8):
            source.step()
    # read ok; read fails (0.5); 4 failed reopens (1, 2, 3 capped, 3); reopen + read ok; read fails
    # again and the backoff starts over from 0.5 after the good frame.
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0, 0.5]
    assert script.opened == 2 and script.released == 2
    assert caplog.text.count("camera unplugged") == 4
    assert "reopened" in caplog.text
    source.close()


def test_live_frames_t_is_seconds_since_open():
    now = [50.0]
    capture = Script(opens=[True], reads=[True, True])
    source = LiveSource(capture.open, name="fake", clock=lambda: now[0], start=False)
    now[0] = 51.5
    source.step()
    frame = next(source.frames())
    assert frame.t == pytest.approx(1.5) and frame.index == 0
    source.close()


class BgrCapture:
    """A fake cv2.VideoCapture: isOpened/set/read/release, delivering one BGR red frame."""

    def __init__(self, source) -> None:
        self.props: dict[int, float] = {}
        self.gate = threading.Event()
        self.count = 0

    def isOpened(self) -> bool:  # noqa: N802 - cv2's name
        return True

    def set(self, prop: int, value: float) -> bool:
        self.props[prop] = value
        return True

    def read(self):
        self.count += 1
        if self.count > 1:
            self.gate.wait()
            return False, None
        bgr = np.zeros((H, W, 3), np.uint8)
        bgr[..., 2] = 255
        return True, bgr

    def release(self) -> None:
        self.gate.set()


def test_opencv_camera_converts_to_rgb_and_sets_size():
    made: list[BgrCapture] = []

    def factory(source):
        made.append(BgrCapture(source))
        return made[-1]

    camera = OpenCvCamera(0, 320, 240, fps=15.0, capture_factory=factory, sleep=lambda s: None, start=False)
    camera.step()
    frame = next(camera.frames())
    assert frame.image[0, 0].tolist() == [255, 0, 0]
    assert made[0].props[cv2.CAP_PROP_FRAME_WIDTH] == 320
    assert made[0].props[cv2.CAP_PROP_FRAME_HEIGHT] == 240
    assert made[0].props[cv2.CAP_PROP_FPS] == 15.0
    camera.close()


# --- picamera colour conversion --------------------------------------------------------------


def i420(rgb: np.ndarray, stride: int) -> np.ndarray:
    """Encode an RGB image as padded I420 with the full-range BT.601 matrix (what sYCC uses)."""
    h, w, _ = rgb.shape
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    u = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    v = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b

    def plane(a: np.ndarray, rows: int, row_bytes: int) -> np.ndarray:
        out = np.full((rows, row_bytes), 77, np.uint8)  # 77: padding that must be ignored
        out[:, : a.shape[1]] = np.clip(np.round(a), 0, 255)
        return out.ravel()

    sub = (slice(None, None, 2), slice(None, None, 2))
    return np.concatenate(
        [plane(y, h, stride), plane(u[sub], h // 2, stride // 2), plane(v[sub], h // 2, stride // 2)]
    )


@pytest.mark.parametrize("colour", [(255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)])
def test_yuv420_to_rgb_keeps_channel_order_and_drops_padding(colour):
    rgb = np.zeros((6, 10, 3), np.uint8)
    rgb[:] = colour
    out = yuv420_to_rgb(i420(rgb, stride=16), width=10, height=6, stride=16)
    assert out.shape == (6, 10, 3)
    assert np.abs(out.astype(int) - np.array(colour)).max() <= 3


def test_yuv420_to_rgb_short_buffer_is_a_camera_error():
    with pytest.raises(CameraError, match="too short"):
        yuv420_to_rgb(np.zeros(10, np.uint8), 10, 6, 16)


def test_a_fifo_as_source_is_refused_instead_of_hanging(tmp_path):
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)  # the decoder would wait for ever for a writer
    with pytest.raises(CameraError, match="not a video, image or folder"):
        open_source(str(fifo))
