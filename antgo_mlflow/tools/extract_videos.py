"""extract/videos: sample frames from videos (OpenCV) into a standard GT dataset folder.

``frame_rate`` is in frames per second of video time: 2.0 keeps the first frame at or after
0 s, 0.5 s, 1.0 s, ... of each video, whatever the video's own fps. (antgo's ``--frame-rate=N``
meant "every Nth frame"; for a 30 fps video antgo's 15 is 2.0 here.)
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

from antgo_mlflow.errors import DataError, UsageError
from antgo_mlflow.fileio import StagingDir
from antgo_mlflow.gt import new_sample, save_gt
from antgo_mlflow.gt.io import ANNOTATION_FILE
from antgo_mlflow.progress import progress
from antgo_mlflow.tools._extract_common import (
    VIDEO_EXTS,
    ExtractSummary,
    check_max_size,
    check_tgt,
    fit_size,
    walk_files,
)

UNREADABLE_VIDEO = "unreadable video"
NOT_VIDEO = "non-video file"
# Used when a container does not report its frame rate.
FALLBACK_FPS = 25.0


def _opencv():
    import cv2

    # FFmpeg prints its own complaints ("moov atom not found") straight to stderr; the summary
    # reports unreadable videos instead. A user who sets the variable keeps their choice.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    return cv2


@contextlib.contextmanager
def _opencv_silenced(cv2):
    """OpenCV's own log lines off while we probe videos (we report failures ourselves)."""
    try:
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # very old OpenCV builds
        yield
        return
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


def _open(cv2, path: Path):
    # FFmpeg only: the fallback backends would try to read the file as an image sequence
    try:
        if cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
            return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    except AttributeError:
        pass
    return cv2.VideoCapture(str(path))


def _frame_dirs(videos: list[Path]) -> dict[Path, Path]:
    """Output folder per video: <rel dir>/<stem>, or <stem>_<ext> when two videos share a stem."""
    stems: dict[Path, int] = {}
    for rel in videos:
        key = rel.parent / rel.stem
        stems[key] = stems.get(key, 0) + 1
    out = {}
    for rel in videos:
        key = rel.parent / rel.stem
        out[rel] = key if stems[key] == 1 else rel.parent / f"{rel.stem}_{rel.suffix.lstrip('.')}"
    return out


def _sample_video(cv2, path: Path, frame_rate: float):
    """Yield (frame index, BGR frame) for the frames kept at ``frame_rate`` per second."""
    cap = _open(cv2, path)
    try:
        if not cap.isOpened():
            return
        fps = cap.get(cv2.CAP_PROP_FPS)
        if not fps or not math.isfinite(fps) or fps <= 0:
            fps = FALLBACK_FPS
        period = 1.0 / frame_rate
        next_t = 0.0
        index = 0
        while True:
            # grab() skips decoding of the frames we do not keep
            if not cap.grab():
                break
            t = index / fps
            if t + 1e-6 >= next_t:
                ok, frame = cap.retrieve()
                if ok and frame is not None:
                    yield index, frame
                while next_t <= t + 1e-6:
                    next_t += period
            index += 1
    finally:
        cap.release()


def extract_videos(
    src: str | os.PathLike,
    tgt: str | os.PathLike,
    frame_rate: float = 1.0,
    max_size: int | None = None,
    ext: str = "jpg",
) -> ExtractSummary:
    """Sample frames from the videos under ``src`` (a folder, recursive, or one video file).

    Args:
        src: a video file or a folder searched recursively for mp4/avi/mov/mkv/ts/... files.
        tgt: output folder. Frames go to ``<video dir>/<video stem>/<video stem>_frame-<k>.<ext>``
            where ``k`` is the frame's index in the video.
        frame_rate: frames kept per second of video time (> 0); a value at or above the
            video's fps keeps every frame.
        max_size: resize frames so the long side is at most this (aspect kept, never upscaled).
        ext: ``jpg`` or ``png``.

    Returns:
        An ExtractSummary. Each sample has the frame's own written ``height``/``width`` and
        ``tag`` = the source video's path relative to ``src`` (its file name for a file ``src``).
        Videos OpenCV cannot open or read are skipped with a warning.

    Raises:
        DataError: ``src`` missing, no videos in it, or none of them could be read.
        UsageError: a bad ``frame_rate``, ``max_size`` or ``ext``.

    Example:
        >>> extract_videos("clips/", "frames/", frame_rate=2, max_size=512)  # doctest: +SKIP
    """
    if src is None or str(src) == "":
        raise UsageError("--src is required")
    src_path = Path(src).expanduser()
    if not src_path.exists():
        raise DataError(f"--src {src_path}: no such file or folder")
    tgt_dir = check_tgt(tgt, src_path)
    max_size = check_max_size(max_size)
    if frame_rate is None or not math.isfinite(frame_rate) or frame_rate <= 0:
        raise UsageError(f"--frame-rate must be > 0 (frames per second), got {frame_rate}")
    ext = ext.lower().lstrip(".")
    if ext not in ("jpg", "jpeg", "png"):
        raise UsageError(f"--ext must be jpg or png, got {ext!r}")

    summary = ExtractSummary(tgt=tgt_dir)
    if src_path.is_file():
        root, files = src_path.parent, [Path(src_path.name)]
    else:
        root, files = src_path, walk_files(src_path, exclude=tgt_dir)
        if not files:
            raise DataError(f"--src {src_path}: empty folder (no files found)")
    videos = []
    for rel in files:
        if rel.suffix.lower() in VIDEO_EXTS:
            videos.append(rel)
        else:
            summary.skip(rel.as_posix(), NOT_VIDEO)
    if not videos:
        raise DataError(
            f"--src {src_path}: no video files (looked for {', '.join(VIDEO_EXTS)}); "
            f"{summary.skipped_text()}"
        )

    cv2 = _opencv()
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext in ("jpg", "jpeg") else []
    samples = []
    dirs = _frame_dirs(videos)
    with StagingDir(tgt_dir) as staging, _opencv_silenced(cv2):
        for rel in progress(videos, len(videos), "extract/videos", "video"):
            out_dir = dirs[rel]
            (staging.path / out_dir).mkdir(parents=True, exist_ok=True)
            n_frames = 0
            for index, frame in _sample_video(cv2, root / rel, frame_rate):
                h, w = frame.shape[:2]
                tw, th = fit_size(w, h, max_size)
                if (tw, th) != (w, h):
                    frame = cv2.resize(frame, (tw, th), interpolation=cv2.INTER_AREA)
                name = (out_dir / f"{out_dir.name}_frame-{index}.{ext}").as_posix()
                ok, buf = cv2.imencode(f".{ext}", frame, params)
                if not ok:
                    raise DataError(f"{root / rel}: could not encode frame {index} as {ext}")
                (staging.path / name).write_bytes(buf.tobytes())
                samples.append(
                    new_sample(
                        image_file=name,
                        height=int(frame.shape[0]),
                        width=int(frame.shape[1]),
                        tag=rel.as_posix(),
                    )
                )
                summary.outputs.append(tgt_dir / name)
                n_frames += 1
            if n_frames == 0:
                summary.skip(rel.as_posix(), UNREADABLE_VIDEO)
                summary.warnings.append(
                    f"{root / rel}: OpenCV could not open or read this video; skipped"
                )
        if not samples:
            names = ", ".join(p for p, r in summary.skipped_files if r == UNREADABLE_VIDEO)
            raise DataError(
                f"--src {src_path}: OpenCV could not open or read any video ({names:.200})"
            )
        save_gt(staging.path / ANNOTATION_FILE, samples)
        staging.commit(last=[ANNOTATION_FILE])

    summary.written = len(samples)
    summary.annotation = tgt_dir / ANNOTATION_FILE
    summary.outputs.append(summary.annotation)
    summary.extra["videos"] = len(videos) - summary.skipped[UNREADABLE_VIDEO]
    return summary
