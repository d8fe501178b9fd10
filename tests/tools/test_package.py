"""package/tfrecord and package/kv: determinism, dropped samples, atomicity, re-sharding, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from antgo_mlflow.data.manifest import read_manifest, verify_shards
from antgo_mlflow.data.tfrecord import TFRecordShardReader
from antgo_mlflow.errors import DataError, UsageError
from antgo_mlflow.tools.package_kv import package_kv
from antgo_mlflow.tools.package_tfrecord import package_tfrecord
from tests.data.gtfactory import make_dataset, rich_sample
from tests.helpers import assert_one_line_error


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_pack_twice_gives_byte_identical_shards(tmp_path):
    gt = make_dataset(tmp_path / "ds", n=30, rich=True)
    package_tfrecord(str(gt), tmp_path / "a", "t", num=8, workers=4)
    package_tfrecord([str(gt)], tmp_path / "b", "t", num=8, workers=1)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    package_kv(str(gt), tmp_path / "c", "t", num=8)
    package_kv(str(gt), tmp_path / "d", "t", num=8)
    assert _files(tmp_path / "c") == _files(tmp_path / "d")


def test_dropped_samples_are_counted_before_the_shard_count(tmp_path):
    gt = make_dataset(tmp_path / "ds", n=10, missing=(1, 4, 8))
    summary = package_tfrecord(str(gt), tmp_path / "out", "t", num=7)
    assert summary.total == 7 and summary.dropped == 3
    assert summary.drop_reasons == {"missing image": 3}
    # 7 kept samples fit one shard: antgo would have named it -of-00002 and indexed a ghost
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "t-00000-of-00001-index",
        "t-00000-of-00001-tfrecord",
        "t-manifest.json",
    ]
    verify_shards(summary.manifest)


def test_samples_keep_input_order_across_sources(tmp_path):
    a = make_dataset(tmp_path / "a", n=4)
    b = make_dataset(tmp_path / "b", n=3)
    summary = package_tfrecord(f"{a},{b}", tmp_path / "out", "t", num=100)
    from antgo_mlflow.data.records import decode_sample

    reader = TFRecordShardReader(summary.shards[0])
    files = [decode_sample(reader.read(i))["image_file"] for i in range(len(reader))]
    assert files == [f"img/{i}.png" for i in range(4)] + [f"img/{i}.png" for i in range(3)]
    assert [s["kept"] for s in read_manifest(summary.manifest)["sources"]] == [4, 3]


def test_folder_of_jsons_is_expanded(tmp_path):
    make_dataset(tmp_path / "ds", n=3, name="part1.json")
    make_dataset(tmp_path / "ds", n=2, name="part2.json")
    assert package_tfrecord(str(tmp_path / "ds"), tmp_path / "out", "t").total == 5


def test_empty_or_unreadable_input_is_a_clear_error_and_writes_nothing(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(DataError, match="empty input"):
        package_tfrecord(str(empty), tmp_path / "out", "t")
    gt = make_dataset(tmp_path / "ds", n=3, missing=(0, 1, 2))
    with pytest.raises(DataError, match=r"no readable sample \(3 dropped: missing image"):
        package_kv(str(gt), tmp_path / "out", "t")
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="--num"):
        package_tfrecord(str(gt), tmp_path / "out", "t", num=0)
    with pytest.raises(DataError, match="no such file, folder or shard prefix"):
        package_tfrecord(str(tmp_path / "nope.json"), tmp_path / "out", "t")


def test_rerun_replaces_the_previous_shard_set(tmp_path):
    gt = make_dataset(tmp_path / "ds", n=12)
    package_tfrecord(str(gt), tmp_path / "out", "t", num=5)
    package_tfrecord(str(gt), tmp_path / "out", "t", num=100)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "t-00000-of-00001-index",
        "t-00000-of-00001-tfrecord",
        "t-manifest.json",
    ]


def test_existing_shards_as_src_are_resharded_unchanged(tmp_path):
    gt = make_dataset(tmp_path / "ds", n=11, rich=True)
    tf = package_tfrecord(str(gt), tmp_path / "tf", "t", num=3)
    kv = package_kv(str(tf.manifest), tmp_path / "kv", "t", num=5)
    back = package_tfrecord(str(tmp_path / "kv" / "t"), tmp_path / "tf2", "t", num=3)
    assert kv.total == back.total == 11
    assert _files(tmp_path / "tf2") == {
        k: v for k, v in _files(tmp_path / "tf").items() if k != "t-manifest.json"
    } | {"t-manifest.json": (tmp_path / "tf2" / "t-manifest.json").read_bytes()}
    folder = package_tfrecord(str(tmp_path / "tf"), tmp_path / "tf3", "u", num=100)
    assert folder.total == 11 and read_manifest(folder.manifest)["sources"][0]["kind"] == "shards"


def _pack_in_child(gt: Path, tgt: Path) -> subprocess.Popen:
    code = (
        "import sys; from antgo_mlflow.tools.package_tfrecord import package_tfrecord;"
        "package_tfrecord(sys.argv[1], sys.argv[2], 't', num=3, workers=1)"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(gt), str(tgt)])


def test_kill_9_midway_leaves_nothing_complete_and_rerun_starts_clean(tmp_path):
    gt = make_dataset(tmp_path / "ds", n=40)
    old = package_tfrecord(str(gt), tmp_path / "out", "t", num=100)
    before = _files(tmp_path / "out")
    # Sample 30's image is a FIFO: the packer blocks there after staging 5 shards.
    samples = json.loads(gt.read_text())
    os.mkfifo(tmp_path / "ds" / "img" / "fifo.png")
    samples[30]["image_file"] = "img/fifo.png"
    blocking = tmp_path / "ds" / "blocking.json"
    blocking.write_text(json.dumps(samples))
    proc = _pack_in_child(blocking, tmp_path / "out")
    staged = tmp_path / "out" / ".antgo-tmp-pack-t" / "00002.part"
    deadline = time.time() + 60
    while not staged.exists() and time.time() < deadline:
        time.sleep(0.02)
    assert staged.exists()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    visible = {n: b for n, b in _files(tmp_path / "out").items() if not n.startswith(".")}
    assert visible == before  # the old complete set is untouched, no new file looks complete
    verify_shards(old.manifest)
    summary = package_tfrecord(str(gt), tmp_path / "out", "t", num=3)  # rerun starts clean
    assert summary.total == 40
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
    verify_shards(summary.manifest)


def test_cli_packs_and_reports(tmp_path, run_antgo):
    gt = make_dataset(tmp_path / "ds", n=6, missing=(2,))
    result = run_antgo(
        "tool", "package/tfrecord", f"--src={gt}", "--tgt", str(tmp_path / "tf"),
        "--prefix=train", "--num", "4",
    )  # fmt: skip
    assert result.code == 0, result
    assert "packed 5 samples into 2 tfrecord shard(s)" in result.stdout
    assert "missing image" in result.stderr
    result = run_antgo(
        "tool", "package/kv", "--src", str(tmp_path / "tf" / "train-manifest.json"),
        f"--tgt={tmp_path / 'kv'}", "--prefix=train",
    )  # fmt: skip
    assert result.code == 0, result
    assert read_manifest(tmp_path / "kv" / "train-manifest.json")["total"] == 5
    help_text = run_antgo("tool", "package/tfrecord", "--help").stdout
    assert "Example:" in help_text and "--num" in help_text


def test_cli_bad_input_is_one_line_exit_2(tmp_path, run_antgo):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    tgt = tmp_path / "out"
    result = run_antgo("tool", "package/tfrecord", f"--src={empty}", f"--tgt={tgt}", "--prefix=t")
    assert_one_line_error(result, str(empty), "empty input")
    assert not tgt.exists()  # no partial output
    result = run_antgo(
        "tool", "package/kv", f"--src={empty}", f"--tgt={tgt}", "--prefix=t", "--num=0"
    )  # fmt: skip
    assert_one_line_error(result, "--num")


def test_rich_fields_survive_packing(tmp_path):
    from antgo_mlflow.data.records import decode_sample

    gt = make_dataset(tmp_path / "ds", n=2, rich=True)
    summary = package_kv(str(gt), tmp_path / "kv", "t")
    from antgo_mlflow.data.lmdb_store import LMDBShardReader

    sample = decode_sample(LMDBShardReader(summary.shards[0]).read(1))
    want = rich_sample(1)
    assert sample["segments"] == want["segments"] and sample["label_names"] == ["cat", "dog"]
    assert sample["joints2d"].shape == (2, 3, 2)


def test_antgo_template_fields_are_opt_in(tmp_path, run_antgo):
    from antgo_mlflow.data.records import ANTGO_TEMPLATE, decode_sample

    gt = make_dataset(tmp_path / "ds", n=2)
    lean = package_tfrecord(str(gt), tmp_path / "lean", "t")
    sample = decode_sample(TFRecordShardReader(lean.shards[0]).read(0))
    assert set(sample) == {"image_file", "image_label", "image", "width", "height"}
    result = run_antgo(
        "tool", "package/tfrecord", f"--src={gt}", f"--tgt={tmp_path / 'full'}", "--prefix=t",
        "--antgo-template",
    )  # fmt: skip
    assert result.code == 0, result
    full = decode_sample(
        TFRecordShardReader(tmp_path / "full" / "t-00000-of-00001-tfrecord").read(0)
    )
    assert set(ANTGO_TEMPLATE) <= set(full) and full["view_id"] == "-1"
    assert full["cam_param"] == {} and full["pose"].shape == (0,)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "WEBP"])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_image_size_is_read_from_the_header(fmt, mode):
    import io

    import numpy as np
    from PIL import Image

    from antgo_mlflow.data.pack import _image_size

    buf = io.BytesIO()
    shape = (7, 13, 3) if mode == "RGB" else (7, 13)
    exif = {"exif": Image.Exif()} if fmt == "JPEG" else {}
    Image.fromarray(np.zeros(shape, np.uint8)).save(buf, format=fmt, **exif)
    assert _image_size(buf.getvalue()) == (13, 7)
    assert _image_size(b"\xff\xd8 not really a jpeg") is None
    assert _image_size(b"plain text") is None
