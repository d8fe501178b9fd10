"""TFDataset / KVDataset / TFStreamDataset over real shards: fields, workers, samplers, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from antgo_mlflow.data.datasets import KVDataset, TFDataset, TFStreamDataset
from antgo_mlflow.data.tfrecord import index_path_for, read_index
from antgo_mlflow.errors import ConfigError, DataError, ShardError
from antgo_mlflow.registry import DATASETS
from antgo_mlflow.tools.package_kv import package_kv
from antgo_mlflow.tools.package_tfrecord import package_tfrecord
from tests.data.gtfactory import make_dataset, rich_sample

SEED_DESCRIPTION = {"image": "numpy", "label": "int", "image_file": "str", "tag": "str"}


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """A rich GT of 23 samples packed as TFRecord (num=5 -> 5 shards) and KV (num=10)."""
    root = tmp_path_factory.mktemp("shards")
    gt = make_dataset(root / "ds", n=23, rich=True, classes=["cat", "dog", "bird"])
    tf = package_tfrecord(str(gt), root / "tf", "train", num=5, antgo_template=True)
    kv = package_kv(str(gt), root / "kv", "train", num=10)
    return {"root": root, "gt": gt, "tf": tf, "kv": kv}


@pytest.mark.parametrize("kind", ["tf", "kv"])
def test_round_trip_gives_back_every_field(shards, kind):
    cls = TFDataset if kind == "tf" else KVDataset
    ds = cls(data_folder=str(shards[kind].tgt))
    assert len(ds) == 23
    for i in (0, 7, 22):
        sample, want = ds[i], rich_sample(i)
        assert sample["image_file"] == want["image_file"]
        assert sample["image"] == (shards["gt"].parent / want["image_file"]).read_bytes()
        assert sample["label"] == sample["image_label"] == i % 3
        assert sample["bboxes"].dtype == np.float32 and sample["bboxes"].shape == (2, 4)
        assert sample["joints2d"].shape == (2, 3, 2) and sample["joints2d"].dtype == np.float32
        assert sample["labels"].dtype == np.int64 and sample["labels"].tolist() == want["labels"]
        assert sample["segments"] == want["segments"]
        assert sample["predictions"] == want["predictions"]
        assert sample["label_names"] == ["cat", "dog"]
        assert (sample["width"], sample["height"]) == (10, 8)  # read from the image header
    assert ds.class_names == ["cat", "dog", "bird"]


def _epoch_ids(ds, workers=2, **kw):
    loader = DataLoader(ds, batch_size=4, num_workers=workers, collate_fn=list, **kw)
    return [s["image_file"] for batch in loader for s in batch]


@pytest.mark.parametrize("kind", ["tf", "kv"])
def test_two_workers_shuffle_yield_each_sample_once_per_epoch(shards, kind):
    cls = TFDataset if kind == "tf" else KVDataset
    ds = cls(data_path_list=[str(shards[kind].tgt)])
    ds[3]  # the parent has its files open before the workers fork
    want = sorted(f"img/{i}.png" for i in range(23))
    first = _epoch_ids(ds, shuffle=True)
    second = _epoch_ids(ds, shuffle=True)
    assert sorted(first) == want and sorted(second) == want
    assert first != second  # globally shuffled, not file by file


def test_distributed_sampler_splits_by_sample_not_by_file(shards):
    ds = TFDataset(data_path_list=[str(shards["tf"].manifest)])
    parts = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=1)
        parts.append([ds[i]["image_file"] for i in sampler])
    assert len(parts[0]) == len(parts[1]) == 12  # 23 samples padded to 24
    assert set(parts[0]) | set(parts[1]) == {f"img/{i}.png" for i in range(23)}


def test_seed_config_description_decodes_image_and_default_collate_works(shards):
    cfg = dict(
        type="TFDataset",
        data_path_list=[str(shards["tf"].tgt)],
        pipeline=[],
        inputs_def={"fields": ["image", "label", "image_file"]},
        description=SEED_DESCRIPTION,
    )
    ds = DATASETS.build(cfg)
    sample = ds[5]
    assert set(sample) == {"image", "label", "image_file"}
    assert sample["image"].shape == (8, 10, 3) and sample["image"].dtype == np.uint8
    batch = next(iter(DataLoader(ds, batch_size=4, num_workers=0)))
    assert batch["image"].shape == (4, 8, 10, 3) and batch["label"].dtype == torch.int64
    assert isinstance(batch["image_file"], list)


def test_pipeline_callables_run_before_fields_are_selected(shards):
    def meta(sample):
        sample["image_meta"] = {"image_file": sample["image_file"], "tag": sample["tag"]}
        return sample

    ds = TFDataset(
        data_folder=str(shards["tf"].tgt),
        pipeline=[meta],
        inputs_def={"fields": ["label", "image_meta"], "alias": ["y", "meta"]},
        description=SEED_DESCRIPTION,
    )
    assert ds[4] == {"y": 1, "meta": {"image_file": "img/4.png", "tag": "tag0"}}
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["meta"]["tag"] == ["tag0", "tag1"]


def test_every_kind_of_entry_resolves(shards):
    tgt = shards["tf"].tgt
    entries = [
        str(tgt),
        str(tgt) + "/*",
        str(tgt / "train"),
        str(shards["tf"].manifest),
        str(tgt / "train-00002-of-00005-tfrecord"),
    ]
    sizes = [len(TFDataset(data_path_list=[e])) for e in entries]
    assert sizes == [23, 23, 23, 23, 5]
    both = TFDataset(data_folder=str(tgt), data_path_list=[str(tgt / "train")], ratios=[1, 2])
    assert len(both) == 46 and both.source_sizes == [23, 23] and both.ratios == [1, 2]


def test_antgo_folder_without_manifest_reads_and_incomplete_set_fails(shards, tmp_path):
    import shutil

    folder = tmp_path / "antgo"
    shutil.copytree(shards["tf"].tgt, folder)
    (folder / "train-manifest.json").unlink()
    assert len(TFDataset(data_folder=str(folder))) == 23
    (folder / "train-00003-of-00005-tfrecord").unlink()
    with pytest.raises(ShardError, match="train-00003-of-00005-tfrecord: missing"):
        TFDataset(data_folder=str(folder))


def test_corrupt_record_names_file_and_record(shards, tmp_path):
    import shutil

    folder = tmp_path / "bad"
    shutil.copytree(shards["tf"].tgt, folder)
    shard = folder / "train-00001-of-00005-tfrecord"
    offset = int(read_index(index_path_for(shard))[2, 0]) + 40
    data = bytearray(shard.read_bytes())
    data[offset] ^= 0x55
    shard.write_bytes(bytes(data))
    ds = TFDataset(data_folder=str(folder))
    ds[6]
    with pytest.raises(ShardError) as err:
        ds[7]  # shard 1, record 2
    assert f"{shard}: record 2 is corrupt" in str(err.value)
    with pytest.raises(ShardError, match="sha256 differs"):
        TFDataset(data_folder=str(folder), verify=True)


def test_missing_index_is_an_error_unless_rebuild_is_asked(shards, tmp_path):
    import shutil

    folder = tmp_path / "noindex"
    shutil.copytree(shards["tf"].tgt, folder)
    index = folder / "train-00000-of-00005-index"
    original = index.read_bytes()
    index.unlink()
    with pytest.raises(ShardError, match="train-00000-of-00005-index: index file missing"):
        TFDataset(data_folder=str(folder))
    assert len(TFDataset(data_folder=str(folder), rebuild_index=True)) == 23
    assert index.read_bytes() == original


def test_stream_dataset_needs_no_index_and_workers_do_not_duplicate(shards, tmp_path):
    import shutil

    folder = tmp_path / "stream"
    shutil.copytree(shards["tf"].tgt, folder)
    for index in folder.glob("*-index"):
        index.unlink()
    ds = DATASETS.build(dict(type="TFStreamDataset", data_folder=str(folder), shuffle_queue_size=8))
    assert isinstance(ds, TFStreamDataset)
    ids = _epoch_ids(ds, workers=2)
    assert sorted(ids) == sorted(f"img/{i}.png" for i in range(23))


def test_bad_arguments_are_clear(shards, tmp_path):
    with pytest.raises(ConfigError, match="data_folder or data_path_list"):
        TFDataset()
    with pytest.raises(DataError, match="no tfrecord shards found"):
        TFDataset(data_path_list=[str(tmp_path / "nothing")])
    with pytest.raises(ConfigError, match="use KVDataset"):
        TFDataset(data_path_list=[str(shards["kv"].manifest)])
    with pytest.raises(ConfigError, match="ratios"):
        TFDataset(data_folder=str(shards["tf"].tgt), ratios=[1, 2])
    with pytest.raises(ConfigError, match="data_server"):
        TFDataset(data_server="1.2.3.4/5672/x")
    ds = TFDataset(data_folder=str(shards["tf"].tgt), inputs_def={"fields": ["nope"]})
    with pytest.raises(DataError, match="'nope' is not in the sample"):
        ds[0]
    with pytest.raises(IndexError):
        ds[23]


def test_antgo_written_shards_read_here(tmp_path):
    from tfrecord.tools.tfrecord2idx import create_index
    from tfrecord.writer import TFRecordWriter

    from tests.data.gtfactory import image_bytes

    folder = tmp_path / "antgo"
    folder.mkdir()
    shard = folder / "hand-00000-of-00001-tfrecord"
    writer = TFRecordWriter(str(shard))
    for i in range(4):  # what antgo's TFDataWriter writes for a sample
        boxes = np.array([[i, 0, 4, 4]], dtype=np.float32)
        writer.write({
            "image": (image_bytes(i), "byte"),
            "image_file": (f"{i}.png".encode(), "byte"),
            "image_label": (i % 2, "int"),
            "bboxes": (boxes.tobytes(), "byte"),
            "__bboxes_shape": ([1, 4], "int"),
            "__bboxes_type": (0, "int"),
            "cam_param": (b"{}", "byte"),
        })  # fmt: skip
    writer.close()
    create_index(str(shard), str(folder / "hand-00000-of-00001-index"))
    ds = TFDataset(data_path_list=[str(folder)])
    assert len(ds) == 4
    sample = ds[2]
    assert sample["image_file"] == "2.png" and sample["label"] == 0
    assert sample["bboxes"].tolist() == [[2, 0, 4, 4]] and sample["cam_param"] == {}
    seed = TFDataset(data_path_list=[str(folder)], description=SEED_DESCRIPTION | {"tag": "str"})
    with pytest.raises(DataError, match=r"asks for \['tag'\]"):
        seed[0]


def test_our_shards_read_the_antgo_way(shards):
    """antgo's TFDataset: tfrecord_loader with the default description built from its template
    (the fixture packs with antgo_template=True)."""
    from tfrecord.reader import tfrecord_loader

    from antgo_mlflow.data.records import ANTGO_TEMPLATE
    from antgo_mlflow.data.tfrecord import index_path_for

    description = {"image": "byte"}
    kinds = {}
    for k, v in ANTGO_TEMPLATE.items():
        if isinstance(v, list):
            description.update({k: "byte", f"__{k}_type": "int", f"__{k}_shape": "int"})
            kinds[k] = "numpy"
        else:
            description[k] = "byte" if isinstance(v, (str, dict)) else "int"
            kinds[k] = "dict" if isinstance(v, dict) else "str" if isinstance(v, str) else "int"
    shard = shards["tf"].shards[1]
    dtypes = {0: np.float32, 1: np.int32, 2: np.int64, 3: np.int8, 4: np.uint8}
    records = list(tfrecord_loader(str(shard), str(index_path_for(shard)), description, (0, 1)))
    assert len(records) == 5
    record = records[2]  # sample 7
    decoded = {}
    for k, kind in kinds.items():
        if kind == "numpy":
            dtype = dtypes[int(record[f"__{k}_type"][0])]
            decoded[k] = np.frombuffer(bytearray(record[k]), dtype).reshape(record[f"__{k}_shape"])
        elif kind == "str":
            decoded[k] = record[k].decode()
        elif kind == "dict":
            import json

            decoded[k] = json.loads(record[k])
    assert decoded["image_file"] == "img/7.png"
    assert decoded["bboxes"].tolist() == rich_sample(7)["bboxes"]
    assert decoded["segments"].tolist() == [[[1, 2], [3, 4], [5, 6]], [[7, 8], [9, 10], [0, 0]]]
    assert decoded["predictions"] == rich_sample(7)["predictions"]
    assert int(record["image_label"][0]) == 1


def test_seed_config_pipeline_through_a_two_worker_loader(shards):
    """The mvp seed's train config (real transforms from TRANSFORMS), as the Runner builds it."""
    pytest.importorskip("antgo_mlflow.data.transforms")
    cfg = dict(
        type="TFDataset",
        data_path_list=[str(shards["tf"].tgt)],
        pipeline=[
            dict(type="Meta", keys=["image_file", "tag"]),
            dict(type="INumpyToPIL", keys=["image"], mode="RGB"),
            dict(type="RandomHorizontalFlip", keys=["image"]),
            dict(
                type="RandomCrop",
                size=(8, 8),
                padding=1,
                fill=128,
                padding_mode="constant",
                keys=["image"],
            ),  # fmt: skip
            dict(type="ToTensor", keys=["image"]),
            dict(type="Normalize", mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), keys=["image"]),
        ],
        inputs_def={"fields": ["image", "label", "image_meta"]},
        description=SEED_DESCRIPTION,
    )
    ds = DATASETS.build(cfg)
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=True, drop_last=True)
    batches = list(loader)
    assert len(batches) == 5
    assert batches[0]["image"].shape == (4, 3, 8, 8) and batches[0]["image"].dtype == torch.float32
    labels = torch.cat([b["label"] for b in batches])
    assert labels.tolist() == [
        int(f.split("/")[1][:-4]) % 3 for b in batches for f in b["image_meta"]["image_file"]
    ]


def _seed_pipeline_dataset(shards, kind="tf", **kw):
    pytest.importorskip("antgo_mlflow.data.transforms")
    cfg = dict(
        type="TFDataset" if kind == "tf" else "KVDataset",
        data_path_list=[str(shards[kind].tgt)],
        pipeline=[
            dict(type="RandomHorizontalFlip", keys=["image"]),
            dict(type="RandomCrop", size=(6, 6), padding=1, keys=["image"]),
            dict(type="ToTensor", keys=["image"]),
        ],
        inputs_def={"fields": ["image", "label", "image_file"]},
        description=SEED_DESCRIPTION,
        **kw,
    )
    return DATASETS.build(cfg)


def _seeded_epoch(ds, workers=0):
    torch.manual_seed(7)
    loader = DataLoader(ds, batch_size=8, shuffle=True, num_workers=workers)
    return list(loader)


@pytest.mark.parametrize("kind", ["tf", "kv"])
def test_read_threads_give_the_same_seeded_batches_as_one_thread(shards, kind):
    """Random transforms draw in index order whatever the thread count: a seeded epoch with
    3 reading threads equals the single-threaded one, tensor for tensor."""
    one = _seeded_epoch(_seed_pipeline_dataset(shards, kind))
    three = _seeded_epoch(_seed_pipeline_dataset(shards, kind, read_threads=3))
    assert len(one) == len(three) == 3
    for a, b in zip(one, three, strict=True):
        assert a["image_file"] == b["image_file"]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])


def test_read_threads_inside_two_workers_read_each_sample_once(shards):
    import pickle

    ds = TFDataset(data_path_list=[str(shards["tf"].tgt)], read_threads=2)
    ds.__getitems__([0, 1, 2])  # the parent's pool exists before the workers fork
    assert pickle.loads(pickle.dumps(ds))._pool is None  # spawned workers make their own
    ids = _epoch_ids(ds, workers=2, shuffle=True)
    assert sorted(ids) == sorted(f"img/{i}.png" for i in range(23))


def test_read_threads_report_a_corrupt_record_by_file_and_record(shards, tmp_path):
    import shutil

    folder = tmp_path / "bad"
    shutil.copytree(shards["tf"].tgt, folder)
    shard = folder / "train-00001-of-00005-tfrecord"
    offset = int(read_index(index_path_for(shard))[2, 0]) + 40
    data = bytearray(shard.read_bytes())
    data[offset] ^= 0x55
    shard.write_bytes(bytes(data))
    ds = TFDataset(data_folder=str(folder), read_threads=2)
    with pytest.raises(ShardError, match=f"{shard}: record 2 is corrupt"):
        ds.__getitems__(list(range(23)))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_read_threads_must_be_a_positive_integer(shards, bad):
    with pytest.raises(ConfigError, match="read_threads: expected an integer >= 1"):
        TFDataset(data_folder=str(shards["tf"].tgt), read_threads=bad)


def test_read_threads_name_the_record_whose_image_does_not_decode(shards, tmp_path):
    from antgo_mlflow.data.records import serialize_sample
    from antgo_mlflow.data.tfrecord import TFRecordShardWriter, format_index

    good = (shards["gt"].parent / "img/0.png").read_bytes()
    shard = tmp_path / "odd-00000-of-00001-tfrecord"
    writer = TFRecordShardWriter(shard)
    for i in range(6):
        writer.write(serialize_sample({"image": good if i != 4 else b"not an image", "tag": "x"}))
    writer.close()
    index_path_for(shard).write_bytes(format_index(writer.index))
    ds = TFDataset(data_path_list=[str(shard)], description={"image": "numpy"}, read_threads=2)
    assert ds.__getitems__([0, 1, 2])[2]["image"].shape == (8, 10, 3)
    with pytest.raises(DataError, match=f"{shard}: record 4: cannot decode image bytes"):
        ds.__getitems__(list(range(6)))


def test_read_threads_in_a_fresh_process_share_the_first_decoder_import(shards):
    """The first batch of a new process (a DataLoader worker) imports OpenCV from several
    threads at once; every image must still decode."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from antgo_mlflow.data.datasets import TFDataset\n"
        "assert 'cv2' not in sys.modules\n"
        f"ds = TFDataset(data_folder={str(shards['tf'].tgt)!r}, description={{'image': 'numpy'}},"
        " read_threads=4)\n"
        "print(sorted({s['image'].shape for s in ds.__getitems__(list(range(23)))}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[(8, 10, 3)]"
