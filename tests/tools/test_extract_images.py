"""extract/images: copy/resize, filters, order, skipping bad files, staged output, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from antgo_mlflow.errors import DataError, UsageError
from antgo_mlflow.gt import load_gt
from antgo_mlflow.tools import extract_images as mod
from antgo_mlflow.tools.extract_images import extract_images
from tests.helpers import assert_one_line_error
from tests.tools._extract_data import files_under, make_corrupt_jpeg, make_image, run_inprocess

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def src(tmp_path) -> Path:
    """Six images in two sub-folders (PNG and JPEG, landscape and portrait) + one text file."""
    root = tmp_path / "raw"
    make_image(root / "cats" / "cat_a.jpg", 200, 100, seed=1)
    make_image(root / "cats" / "cat_b.png", 100, 300, seed=2)
    make_image(root / "cats" / "kitten_c.jpg", 40, 30, seed=3)
    make_image(root / "dogs" / "dog_a.png", 120, 120, seed=4)
    make_image(root / "dogs" / "dog_b_small.jpg", 64, 48, seed=5)
    make_image(root / "top.png", 50, 20, seed=6)
    (root / "notes.txt").write_text("not an image")
    return root


def test_copies_images_unchanged_keeping_relative_paths(src, tmp_path):
    tgt = tmp_path / "out"
    summary = extract_images(src, tgt, workers=1)
    samples = load_gt(tgt / "annotation.json")
    assert [s["image_file"] for s in samples] == [
        "cats/cat_a.jpg",
        "cats/cat_b.png",
        "cats/kitten_c.jpg",
        "dogs/dog_a.png",
        "dogs/dog_b_small.jpg",
        "top.png",
    ]
    for s in samples:
        assert (tgt / s["image_file"]).read_bytes() == (src / s["image_file"]).read_bytes()
    assert samples[0]["tag"] == "cats" and samples[-1]["tag"] == ""
    assert (samples[1]["width"], samples[1]["height"]) == (100, 300)
    assert summary.written == 6
    assert summary.skipped == {"non-image file": 1}
    assert "wrote 6 images" in summary.describe("images")
    assert "1 non-image file" in summary.describe("images")


def test_resizes_long_side_keeping_aspect_and_never_upscales(src, tmp_path):
    tgt = tmp_path / "out"
    extract_images(src, tgt, max_size=64, workers=1)
    sizes = {s["image_file"]: (s["width"], s["height"]) for s in load_gt(tgt / "annotation.json")}
    assert sizes["cats/cat_a.jpg"] == (64, 32)
    assert sizes["cats/cat_b.png"] == (21, 64)
    assert sizes["dogs/dog_a.png"] == (64, 64)
    assert sizes["cats/kitten_c.jpg"] == (40, 30)  # smaller: copied, not upscaled
    assert (tgt / "cats/kitten_c.jpg").read_bytes() == (src / "cats/kitten_c.jpg").read_bytes()
    assert sizes["dogs/dog_b_small.jpg"] == (64, 48)  # long side == max: copied
    for name, (w, h) in sizes.items():
        with Image.open(tgt / name) as im:
            assert im.size == (w, h), name
            assert im.format == ("JPEG" if name.endswith(".jpg") else "PNG")


def test_exif_rotated_jpeg_is_written_upright_when_resized(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed rotated 90 degrees
    make_image(tmp_path / "raw" / "phone.jpg", 200, 100, exif=exif.tobytes())
    summary = extract_images(tmp_path / "raw", tmp_path / "out", max_size=50, workers=1)
    sample = load_gt(summary.annotation)[0]
    assert (sample["width"], sample["height"]) == (25, 50)
    with Image.open(tmp_path / "out" / "phone.jpg") as im:
        assert im.size == (25, 50)


def test_prefix_suffix_and_ext_filters(src, tmp_path):
    def names(**kw):
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        extract_images(src, out, workers=1, **kw)
        return [s["image_file"] for s in load_gt(out / "annotation.json")]

    assert names(prefix="cat") == ["cats/cat_a.jpg", "cats/cat_b.png"]
    assert names(suffix="_a") == ["cats/cat_a.jpg", "dogs/dog_a.png"]
    assert names(ext="png") == ["cats/cat_b.png", "dogs/dog_a.png", "top.png"]
    assert names(ext=".JPG,png", prefix="dog") == ["dogs/dog_a.png", "dogs/dog_b_small.jpg"]
    with pytest.raises(DataError, match="match --prefix=zebra"):
        extract_images(src, tmp_path / "none", prefix="zebra")
    assert not (tmp_path / "none").exists()


def test_shuffle_is_seeded_and_num_limits_the_output(src, tmp_path):
    def order(seed, num=None, name=None):
        out = tmp_path / (name or f"out_{seed}_{num}")
        extract_images(src, out, shuffle=True, seed=seed, num=num, workers=2)
        return [s["image_file"] for s in load_gt(out / "annotation.json")], out

    first, _ = order(1)
    again, _ = order(1, name="again")
    other, _ = order(2)
    assert first == again
    assert sorted(first) == sorted(other) and first != other
    limited, out = order(1, num=3)
    assert limited == first[:3]
    # workers ran ahead of the cut: nothing beyond the 3 samples may be left behind
    assert files_under(out) == sorted(["annotation.json", *limited])


def test_num_larger_than_available_writes_all_and_says_so(src, tmp_path):
    summary = extract_images(src, tmp_path / "out", num=100, workers=1)
    assert summary.written == 6
    assert "--num=100 asked for more than the 6 readable images" in summary.describe()
    with pytest.raises(UsageError, match="--num must be >= 1"):
        extract_images(src, tmp_path / "out", num=0)


def test_pool_gives_the_same_output_as_one_worker(src, tmp_path):
    extract_images(src, tmp_path / "one", max_size=48, workers=1)
    extract_images(src, tmp_path / "two", max_size=48, workers=2)
    one = (tmp_path / "one" / "annotation.json").read_text()
    assert one == (tmp_path / "two" / "annotation.json").read_text()
    for name in files_under(tmp_path / "one"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_corrupt_and_non_image_files_are_skipped_and_counted(src, tmp_path):
    make_corrupt_jpeg(src / "cats" / "broken.jpg")
    (src / "dogs" / "fake.png").write_bytes(b"this is not a png")
    summary = extract_images(src, tmp_path / "out", max_size=64, workers=2)
    assert summary.written == 6
    assert summary.skipped == {"corrupt image": 1, "non-image file": 2}
    text = summary.describe("images")
    assert "skipped 3 (1 corrupt image, 2 non-image files)" in text
    assert "cats/broken.jpg (corrupt image)" in text
    written = files_under(tmp_path / "out")
    assert "cats/broken.jpg" not in written and "dogs/fake.png" not in written


@pytest.mark.parametrize("exc", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_failure_midway_leaves_no_partial_output(src, tmp_path, monkeypatch, exc):
    real = mod.convert_image
    calls = []

    def flaky(src_file, dst, max_size):
        calls.append(src_file)
        if len(calls) == 4:
            raise exc
        return real(src_file, dst, max_size)

    monkeypatch.setattr(mod, "convert_image", flaky)
    tgt = tmp_path / "out"
    with pytest.raises(type(exc)):
        extract_images(src, tgt, max_size=32, workers=1)
    assert len(calls) == 4
    assert not tgt.exists()  # created by the run, so removed with it

    # an existing target keeps its old content and gets no stray images or staging folders
    tgt.mkdir()
    (tgt / "annotation.json").write_text("[]")
    calls.clear()
    with pytest.raises(type(exc)):
        extract_images(src, tgt, max_size=32, workers=1)
    assert files_under(tgt) == ["annotation.json"]
    assert [p.name for p in tgt.iterdir()] == ["annotation.json"]
    assert (tgt / "annotation.json").read_text() == "[]"


def test_ctrl_c_while_the_pool_runs_leaves_nothing(src, tmp_path, monkeypatch):
    def interrupted(iterable, total=None, desc="", unit=""):
        for i, item in enumerate(iterable):
            if i == 2:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(mod, "progress", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_images(src, tmp_path / "out", max_size=32, workers=2)
    assert not (tmp_path / "out").exists()


def test_output_folder_inside_src_is_not_read_back(src):
    tgt = src / "dataset"
    extract_images(src, tgt, workers=1)
    summary = extract_images(src, tgt, workers=1)  # second run must not see dataset/*
    assert summary.written == 6
    assert all(not s["image_file"].startswith("dataset") for s in load_gt(summary.annotation))


def test_refuses_to_write_into_src_and_rejects_missing_or_empty_input(src, tmp_path):
    with pytest.raises(UsageError, match="must differ from --src"):
        extract_images(src, src)
    with pytest.raises(DataError, match="no such file or folder"):
        extract_images(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty folder"):
        extract_images(tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- the command line -------------------------------------------------------------------------


def test_cli_extracts_1000_small_images_with_correct_sizes(tmp_path, run_antgo):
    """The issue's 'done when': 1,000 small images through the real `antgo` entry point."""
    src = tmp_path / "many"
    for i in range(1000):
        w, h = 24 + (i * 7) % 41, 24 + (i * 13) % 41
        make_image(src / f"d{i % 5}" / f"im{i:04d}.{'png' if i % 2 else 'jpg'}", w, h, seed=i)
    res = run_antgo(
        "tool", "extract/images", f"--src={src}", "--tgt", str(tmp_path / "ds"), "--max-size=32"
    )
    assert res.code == 0, res
    assert "wrote 1000 images" in res.stdout and "nothing skipped" in res.stdout
    samples = load_gt(tmp_path / "ds" / "annotation.json")
    assert len(samples) == 1000
    for s in samples[::37]:
        with (
            Image.open(src / s["image_file"]) as orig,
            Image.open(tmp_path / "ds" / s["image_file"]) as im,
        ):
            assert im.size == (s["width"], s["height"])
            assert max(im.size) == min(32, max(orig.size))


def test_bundled_sample_images_extract_with_max_size(tmp_path, capsys):
    res = run_inprocess(
        capsys,
        "tool",
        "extract/images",
        f"--src={REPO / 'recipes/samples/images'}",
        f"--tgt={tmp_path / 'output/sample_dataset'}",
        "--max-size=64",
    )
    assert res.code == 0, res
    assert "wrote 6 images" in res.stdout
    samples = json.loads((tmp_path / "output/sample_dataset/annotation.json").read_text())
    assert {s["tag"] for s in samples} == {"china", "flower"}
    assert all(max(s["width"], s["height"]) == 64 for s in samples)


def test_cli_missing_src_is_one_line(tmp_path, run_antgo):
    res = run_antgo("tool", "extract/images", f"--tgt={tmp_path / 'out'}")
    assert_one_line_error(res, "--src")
    assert not (tmp_path / "out").exists()


def test_cli_bad_inputs_are_one_line_and_leave_nothing(tmp_path, capsys):
    tgt = tmp_path / "out"
    res = run_inprocess(
        capsys, "tool", "extract/images", f"--src={tmp_path / 'nope'}", f"--tgt={tgt}"
    )
    assert_one_line_error(res, "nope", "no such file or folder")
    (tmp_path / "empty").mkdir()
    res = run_inprocess(
        capsys, "tool", "extract/images", f"--src={tmp_path / 'empty'}", f"--tgt={tgt}"
    )
    assert_one_line_error(res, "empty", "empty folder")
    make_corrupt_jpeg(tmp_path / "one" / "only.jpg")
    res = run_inprocess(
        capsys, "tool", "extract/images", f"--src={tmp_path / 'one'}", f"--tgt={tgt}"
    )
    assert_one_line_error(res, "no readable images", "1 corrupt image", "only.jpg")
    assert not tgt.exists()


def test_cli_corrupt_image_among_good_ones_is_counted_not_fatal(src, tmp_path, capsys):
    make_corrupt_jpeg(src / "cats" / "broken.jpg")
    res = run_inprocess(
        capsys, "tool", "extract/images", "--src", str(src), "--tgt", str(tmp_path / "o")
    )
    assert res.code == 0, res
    assert "wrote 6 images" in res.stdout
    assert "skipped 2 (1 corrupt image, 1 non-image file)" in res.stdout


def test_extract_modules_import_neither_torch_nor_mlflow():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import antgo_mlflow.tools.extract_images, antgo_mlflow.tools.extract_videos\n"
        "import antgo_mlflow.tools.extract_coco, antgo_mlflow.tools.extract_crop\n"
        "import antgo_mlflow.tools.extract_samples, antgo_mlflow.cli.extract\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'mlflow', 'torchvision'}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _extract_until_staging(tmp_path, n_images: int):
    """Start `antgo tool extract/images --workers=2` in its own session on ``n_images`` images and
    return (process, target) once a converted image is in the staging folder."""
    import subprocess
    import sys
    import time

    raw = tmp_path / "raw"
    for i in range(n_images):
        make_image(raw / f"{i:03d}.png", 160, 120, seed=i)
    tgt = tmp_path / "out"
    tgt.mkdir()
    (tgt / "annotation.json").write_text("[]")
    proc = subprocess.Popen(
        [sys.executable, "-m", "antgo_mlflow", "tool", "extract/images", f"--src={raw}",
         f"--tgt={tgt}", "--max-size=40", "--workers=2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 60
    while not any(p.suffix == ".png" for p in tgt.glob(".antgo-tmp-*/*")):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.01)
    return proc, tgt


@pytest.mark.parametrize("group", [False, True], ids=["antgo-only", "process-group"])
def test_sigterm_during_extract_ends_quietly_and_leaves_the_target_as_before(tmp_path, group):
    """SIGTERM to antgo (or to its whole group, as `timeout` or a scheduler sends it) while the
    worker pool converts: one line, no worker tracebacks, the target exactly as before."""
    import os
    import signal

    proc, tgt = _extract_until_staging(tmp_path, 120)
    if group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert [line for line in err.splitlines() if line.strip()] == ["antgo: terminated"]
    assert sorted(p.name for p in tgt.iterdir()) == ["annotation.json"]
    assert (tgt / "annotation.json").read_text() == "[]"


def test_a_worker_killed_mid_extract_fails_in_one_line_and_leaves_the_target_as_before(tmp_path):
    """A pool worker killed with SIGKILL (as the OOM killer does) while images convert: antgo
    does not wait forever for the lost images, it says so in one line and exits 1; the target is
    exactly as before."""
    import os
    import signal

    import psutil

    proc, tgt = _extract_until_staging(tmp_path, 400)
    try:
        # the pool's workers are the forkserver's children, antgo's grandchildren
        workers = [
            c for c in psutil.Process(proc.pid).children(recursive=True) if c.ppid() != proc.pid
        ]
        assert workers
        os.kill(workers[0].pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 1, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "a worker process died" in lines[0], err
    assert sorted(p.name for p in tgt.iterdir()) == ["annotation.json"]
    assert (tgt / "annotation.json").read_text() == "[]"


def test_label_from_folder_labels_by_class_folder_in_sorted_order(src, tmp_path):
    (src / "docs").mkdir()
    (src / "docs" / "readme.txt").write_text("a folder without images is no class")
    tgt = tmp_path / "out"
    summary = extract_images(src, tgt, workers=1, label_from="folder")
    samples = load_gt(tgt / "annotation.json")
    assert [(s["image_file"], s["image_label"], s["image_label_name"]) for s in samples] == [
        ("cats/cat_a.jpg", 0, "cats"),
        ("cats/cat_b.png", 0, "cats"),
        ("cats/kitten_c.jpg", 0, "cats"),
        ("dogs/dog_a.png", 1, "dogs"),
        ("dogs/dog_b_small.jpg", 1, "dogs"),
    ]
    assert summary.extra["categories"] == ["cats", "dogs"]
    assert json.loads((tgt / "meta.json").read_text())["meta"]["category"] == ["cats", "dogs"]
    assert "top.png" in summary.skipped_text(True)  # outside any class folder: skipped, counted


def test_label_from_folder_on_a_flat_folder_is_one_line(tmp_path, capsys):
    flat = tmp_path / "flat"
    make_image(flat / "a.jpg", 20, 20)
    make_image(flat / "b.jpg", 20, 20, seed=1)
    res = run_inprocess(
        capsys,
        "tool",
        "extract/images",
        f"--src={flat}",
        f"--tgt={tmp_path / 'o'}",
        "--label-from=folder",
    )
    assert_one_line_error(res, "--label-from=folder", "<src>/<class>/")
    assert not (tmp_path / "o").exists()
    bad = run_inprocess(
        capsys,
        "tool",
        "extract/images",
        f"--src={flat}",
        f"--tgt={tmp_path / 'o'}",
        "--label-from=tags",
    )
    assert_one_line_error(bad, "--label-from")
