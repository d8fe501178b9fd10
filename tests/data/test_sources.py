"""Data sources: the embedded digits (built once, race-safe, deterministic) and the CIFAR-10 reader."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from antgo_mlflow.data.sources import cifar10, digits
from antgo_mlflow.errors import DataError


def _read_records(shard: Path) -> list[dict]:
    from antgo_mlflow.data.records import decode_sample
    from antgo_mlflow.data.tfrecord import iter_frames

    return [decode_sample(data) for _, _, data in iter_frames(shard)]


def test_digits_are_built_once_then_reused(tmp_path):
    first = digits.prepare_digits(tmp_path)
    assert {s: first.splits[s].count for s in digits.SPLITS} == {
        "train": 1259,
        "val": 179,
        "test": 359,
    }
    stamp = (first.root / digits.READY_FILE).stat().st_mtime_ns
    again = digits.prepare_digits(tmp_path)
    assert again.root == first.root
    assert (again.root / digits.READY_FILE).stat().st_mtime_ns == stamp
    # nothing half-built is left beside the dataset
    assert [p.name for p in first.root.parent.iterdir()] == [first.digest]


def test_digits_shards_hold_32x32_rgb_pngs_with_labels(tmp_path):
    import io

    from PIL import Image

    data = digits.prepare_digits(tmp_path)
    records = _read_records(data.splits["test"].shards[0])
    assert len(records) == 359
    image = Image.open(io.BytesIO(records[0]["image"]))
    assert image.size == (32, 32) and image.mode == "RGB"
    labels = sorted({int(r["image_label"]) for r in records})
    assert labels == list(range(10))


def test_digits_split_is_deterministic_disjoint_and_stratified():
    _, _, targets = digits._load_source()
    a, b = digits.split_indices(targets), digits.split_indices(targets)
    assert a == b
    all_idx = a["train"] + a["val"] + a["test"]
    assert sorted(all_idx) == list(range(len(targets)))
    for split in digits.SPLITS:
        assert set(targets[a[split]].tolist()) == set(range(10)), split


def test_digits_parameter_change_builds_a_new_folder(tmp_path, monkeypatch):
    first = digits.prepare_digits(tmp_path)
    monkeypatch.setattr(digits, "TEST_FRACTION", 0.25)
    second = digits.prepare_digits(tmp_path)
    assert second.root != first.root
    assert second.splits["test"].count > first.splits["test"].count


def test_two_processes_racing_get_one_complete_folder(tmp_path):
    code = (
        "import sys; from antgo_mlflow.data.sources.digits import prepare_digits; "
        "print(prepare_digits(sys.argv[1]).root)"
    )
    env = dict(os.environ, ANTGO_PROGRESS="0")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    roots = {o[0].strip() for o in outs}
    assert len(roots) == 1
    parent = Path(roots.pop()).parent
    assert len(list(parent.iterdir())) == 1  # the loser's copy was discarded


def _write_batch(path: Path, n: int = 6, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    """A batch file in CIFAR-10's python format: a pickled dict with bytes keys (protocol 2)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": labels,
        b"data": data,
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }
    with path.open("wb") as fh:
        pickle.dump(batch, fh, protocol=2)
    return data, labels


def test_cifar_reader_reads_a_batch_in_cifar_format(tmp_path):
    data, labels = _write_batch(tmp_path / "test_batch")
    images, got_labels, names = cifar10.read_batch(tmp_path / "test_batch")
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    # CIFAR rows are 1024 red, then 1024 green, then 1024 blue values
    assert images[2, 0, 5, 1] == data[2, 1024 + 5]
    assert got_labels == labels and names[0] == "img_0.png"


def test_cifar_reader_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match="not allowed"):
        cifar10.read_batch(path)
    assert not (tmp_path / "pwned").exists()


def test_cifar_to_gt_and_shards(tmp_path):
    src = tmp_path / "cifar-10-batches-py"
    src.mkdir()
    _write_batch(src / "data_batch_1", n=8, seed=1)
    _write_batch(src / "test_batch", n=4, seed=2)
    data = cifar10.prepare_cifar10(tmp_path, tmp_path / "out")
    assert data.splits["train"].count == 8 and data.splits["test"].count == 4
    from antgo_mlflow.gt import load_gt, read_meta

    samples = load_gt(data.splits["test"].gt)
    assert (tmp_path / "out" / samples[0]["image_file"]).is_file()
    assert read_meta(tmp_path / "out")["meta"]["category"][0] == "airplane"
    assert len(_read_records(data.splits["train"].shards[0])) == 8


def test_cifar_missing_batches_name_the_download_flag(tmp_path):
    with pytest.raises(DataError, match="--download"):
        cifar10.prepare_cifar10(tmp_path / "nothing", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_killed_build_leaves_nothing_that_blocks_the_next(tmp_path):
    base = tmp_path / f"digits-v{digits.LAYOUT_VERSION}"
    stale = base / ".antgo-tmp-deadbeef-0000"
    (stale / "images").mkdir(parents=True)
    old = 1_000_000_000
    os.utime(stale, (old, old))
    data = digits.prepare_digits(tmp_path)
    assert not stale.exists()
    assert data.splits["train"].count == 1259


def test_digits_subset_is_stratified_disjoint_and_built_once(tmp_path):
    data = digits.prepare_digits_subset(per_class=4, root=tmp_path)
    labeled = _read_records(data.splits["labeled"].shards[0])
    unlabeled = _read_records(data.splits["unlabeled"].shards[0])
    assert len(labeled) == 40 and len(unlabeled) == 1259 - 40
    assert sorted(int(r["image_label"]) for r in labeled) == sorted(list(range(10)) * 4)
    assert not {r["image_file"] for r in labeled} & {r["image_file"] for r in unlabeled}
    stamp = (data.root / digits.READY_FILE).stat().st_mtime_ns
    assert digits.prepare_digits_subset(per_class=4, root=tmp_path).root == data.root
    assert (data.root / digits.READY_FILE).stat().st_mtime_ns == stamp
    other = digits.prepare_digits_subset(per_class=4, seed=1, root=tmp_path)
    assert {r["image_file"] for r in _read_records(other.splits["labeled"].shards[0])} != {
        r["image_file"] for r in labeled
    }
    tenth = digits.prepare_digits_subset(fraction=0.1, root=tmp_path)
    assert tenth.splits["labeled"].count == 126 and tenth.splits["test"].count == 359
