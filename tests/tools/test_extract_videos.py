"""extract/videos: frames per second of video time, per-frame sizes, tags, unreadable videos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from antgo_mlflow.errors import DataError, UsageError
from antgo_mlflow.gt import load_gt
from antgo_mlflow.tools.extract_videos import extract_videos
from tests.helpers import assert_one_line_error
from tests.tools._extract_data import files_under, make_video, run_inprocess


@pytest.fixture
def videos(tmp_path) -> Path:
    """A 10 fps 2.5 s 64x48 video and a 20 fps 2 s 96x64 one in a sub-folder."""
    root = tmp_path / "clips"
    make_video(root / "walk.avi", n_frames=25, fps=10, width=64, height=48)
    make_video(root / "cam2" / "street.avi", n_frames=40, fps=20, width=96, height=64)
    return root


def _by_video(samples):
    out = {}
    for s in samples:
        out.setdefault(s["tag"], []).append(s)
    return out


def test_frame_rate_is_frames_per_second_of_video_time(videos, tmp_path):
    summary = extract_videos(videos, tmp_path / "out", frame_rate=2)
    per = _by_video(load_gt(summary.annotation))
    # 2 per second: the frames at 0, 0.5, 1.0, ... s whatever the video's own fps
    assert [s["image_file"] for s in per["walk.avi"]] == [
        f"walk/walk_frame-{k}.jpg" for k in (0, 5, 10, 15, 20)
    ]
    assert [s["image_file"] for s in per["cam2/street.avi"]] == [
        f"cam2/street/street_frame-{k}.jpg" for k in (0, 10, 20, 30)
    ]
    assert summary.written == 9 and summary.extra["videos"] == 2


def test_written_frames_are_the_named_frames(videos, tmp_path):
    summary = extract_videos(videos, tmp_path / "out", frame_rate=2, ext="png")
    for s in load_gt(summary.annotation):
        k = int(s["image_file"].rsplit("-", 1)[1].split(".")[0])
        pixels = np.asarray(Image.open(tmp_path / "out" / s["image_file"]))
        assert abs(float(pixels.mean()) - (k * 10) % 250) < 6, s["image_file"]


def test_each_frame_records_its_own_size(videos, tmp_path):
    summary = extract_videos(videos, tmp_path / "out", frame_rate=1, max_size=80)
    per = _by_video(load_gt(summary.annotation))
    assert {(s["width"], s["height"]) for s in per["walk.avi"]} == {(64, 48)}  # not upscaled
    assert {(s["width"], s["height"]) for s in per["cam2/street.avi"]} == {(80, 53)}
    for s in load_gt(summary.annotation):
        with Image.open(tmp_path / "out" / s["image_file"]) as im:
            assert im.size == (s["width"], s["height"])


def test_frame_rate_above_fps_keeps_every_frame_and_a_single_file_works(videos, tmp_path):
    summary = extract_videos(videos / "walk.avi", tmp_path / "out", frame_rate=100)
    assert summary.written == 25
    assert load_gt(summary.annotation)[0]["tag"] == "walk.avi"


def test_unreadable_video_is_skipped_with_a_warning(videos, tmp_path):
    (videos / "broken.mp4").write_bytes(b"not a video at all")
    (videos / "readme.md").write_text("notes")
    summary = extract_videos(videos, tmp_path / "out", frame_rate=1)
    assert summary.written == 5
    assert summary.skipped == {"unreadable video": 1, "non-video file": 1}
    assert len(summary.warnings) == 1 and "broken.mp4" in summary.warnings[0]
    assert not any("broken" in f for f in files_under(tmp_path / "out"))


def test_bad_arguments_and_inputs(videos, tmp_path):
    with pytest.raises(UsageError, match="--frame-rate must be > 0"):
        extract_videos(videos, tmp_path / "out", frame_rate=0)
    with pytest.raises(DataError, match="no video files"):
        (tmp_path / "pics").mkdir()
        (tmp_path / "pics" / "a.txt").write_text("x")
        extract_videos(tmp_path / "pics", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_video_that_cannot_be_opened_is_one_line_and_writes_nothing(tmp_path, run_antgo):
    bad = tmp_path / "in" / "broken.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    res = run_antgo("tool", "extract/videos", f"--src={bad.parent}", f"--tgt={tmp_path / 'out'}")
    # FFmpeg's own complaint must not reach stderr: exactly one line
    assert_one_line_error(res, "could not open or read any video", "broken.mp4")
    assert not (tmp_path / "out").exists()


def test_cli_prints_summary_and_warning(videos, tmp_path, capsys):
    (videos / "broken.avi").write_bytes(b"junk")
    res = run_inprocess(
        capsys,
        "tool",
        "extract/videos",
        "--src",
        str(videos),
        "--tgt",
        str(tmp_path / "o"),
        "--frame-rate=2",
    )
    assert res.code == 0, res
    assert "wrote 9 frames from 2 video(s)" in res.stdout
    assert "antgo: warning:" in res.stderr and "broken.avi" in res.stderr
