"""Transforms: every registered op runs once on a small sample, geometry moves the annotations.

Real torchvision, OpenCV and PIL; nothing is mocked. Images are 32x32 so the sweep stays fast.
"""

from __future__ import annotations

import io
import pickle
import random

import numpy as np
import pytest
import torch
from PIL import Image

from antgo_mlflow.data.transforms import build_pipeline
from antgo_mlflow.errors import DataError, RegistryError
from antgo_mlflow.registry import TRANSFORMS

B0 = [2.0, 3.0, 10.0, 12.0]
B1 = [14.0, 12.0, 28.0, 30.0]
JOINTS = [[[3.0, 4.0], [6.0, 8.0], [9.0, 11.0]], [[15.0, 13.0], [20.0, 20.0], [27.0, 29.0]]]
SEED_MEAN = (0.491400, 0.482158, 0.4465231)
SEED_STD = (0.247032, 0.243485, 0.2615877)


def make_sample(image=None) -> dict:
    """A 32x32 RGB sample with 2 boxes, 3 joints per instance and one polygon per instance."""
    if image is None:
        image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    return {
        "image": image,
        "image_file": "images/a.png",
        "tag": "train",
        "height": 32,
        "width": 32,
        "label": 3,
        "image_label": 3,
        "bboxes": np.array([B0, B1], np.float32),
        "labels": np.array([1, 2], np.int32),
        "joints2d": np.array(JOINTS, np.float32),
        "joints_vis": np.ones((2, 3), np.int32),
        "segments": [
            [[2.0, 3.0], [10.0, 3.0], [10.0, 12.0], [2.0, 12.0]],
            [[14.0, 12.0, 28.0, 12.0, 28.0, 30.0, 14.0, 30.0]],
        ],
    }


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


# -- the sweep: every registered transform is built and run once ------------------------------

# Arguments for the entries that need some (everything else is built with no arguments).
PARAMS = {
    "CenterCrop": dict(size=16),
    "ConvertBoundingBoxFormat": dict(format="XYWH"),
    "FiveCrop": dict(size=16),
    "TenCrop": dict(size=16),
    "GaussianBlur": dict(kernel_size=3),
    "JPEG": dict(quality=50),
    "Lambda": dict(lambd=torch.nn.Identity()),
    "Normalize": dict(mean=SEED_MEAN, std=SEED_STD),
    "Pad": dict(padding=2),
    "RandomAdjustSharpness": dict(sharpness_factor=2.0),
    "RandomAffine": dict(degrees=10),
    "RandomCrop": dict(size=16, padding=2),
    "RandomPosterize": dict(bits=4),
    "RandomResize": dict(min_size=16, max_size=24),
    "RandomResizedCrop": dict(size=16),
    "RandomRotation": dict(degrees=10),
    "RandomShortestSize": dict(min_size=16),
    "RandomSolarize": dict(threshold=128),
    "Resize": dict(size=16),
    "ScaleJitter": dict(target_size=(32, 32)),
    "SetClampingMode": dict(clamping_mode="hard"),
    "ToDtype": dict(dtype=torch.float32, scale=True),
    "UniformTemporalSubsample": dict(num_samples=1),
    "Compose": dict(transforms=[dict(type="RandomHorizontalFlip", p=1.0)]),
    "RandomApply": dict(transforms=[dict(type="RandomHorizontalFlip", p=1.0)], p=1.0),
    "RandomChoice": dict(transforms=[dict(type="RandomHorizontalFlip"), dict(type="Identity")]),
    "RandomOrder": dict(transforms=[dict(type="RandomHorizontalFlip"), dict(type="Identity")]),
    "Meta": dict(keys=["image_file", "tag"]),
    "ResizeS": dict(target_dim=16),
    "MixupImage": dict(prob=1.0, num_classes=10),
    "CutmixImage": dict(prob=1.0, num_classes=10, mix_ann=True),
    "MixUp": dict(num_classes=10),
    "CutMix": dict(num_classes=10),
    "LinearTransformation": dict(
        transformation_matrix=torch.eye(3 * 4 * 4), mean_vector=torch.zeros(3 * 4 * 4)
    ),
}
# Ops that cannot move boxes: they run on the sample with ignore_annotations=True (and a test
# below checks that they refuse annotated samples otherwise).
for _name in ("AugMix", "AutoAugment", "RandAugment", "TrivialAugmentWide", "FiveCrop", "TenCrop"):
    PARAMS[_name] = dict(PARAMS.get(_name, {}), ignore_annotations=True)
# Ops that need a float image tensor rather than the dataset's uint8 numpy image.
FLOAT_INPUT = {"GaussianNoise", "ConvertImageDtype"}
BATCH_INPUT = {"MixUp", "CutMix"}


def _input_for(name: str) -> dict:
    if name in BATCH_INPUT:
        return {"image": torch.rand(4, 3, 8, 8), "label": torch.tensor([0, 1, 2, 3])}
    if name == "LinearTransformation":
        return {"image": torch.rand(3, 4, 4)}
    sample = make_sample()
    if name in FLOAT_INPUT:
        sample["image"] = torch.rand(3, 32, 32)
    if name in ("MixupImage", "CutmixImage"):
        partner = make_sample(np.full((32, 32, 3), 200, np.uint8))
        partner["label"] = 5
        sample[TRANSFORMS.build(dict(type=name, **PARAMS[name])).partner_key] = partner
    return sample


def _is_image(value) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_is_image(v) for v in value)
    return isinstance(value, (np.ndarray, torch.Tensor, Image.Image))


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_every_registered_transform_runs_on_a_sample(name):
    torch.manual_seed(0)
    op = TRANSFORMS.build(dict(type=name, **PARAMS.get(name, {})), path="data.train.pipeline.0")
    sample = _input_for(name)
    originals = {k: (v, v.copy()) for k, v in sample.items() if isinstance(v, np.ndarray)}
    out = op(sample)
    for k, (array, copy) in originals.items():  # datasets may cache arrays: never write into them
        assert np.array_equal(array, copy), f"{name} changed the caller's {k!r} array in place"
    assert isinstance(out, dict)
    assert _is_image(out["image"]), type(out["image"])
    if name in BATCH_INPUT:
        assert out["image"].shape == (4, 3, 8, 8)
        assert out["label"].shape == (4, 10)
        return
    if "bboxes" in out and name != "ConvertBoundingBoxFormat":
        boxes = np.asarray(out["bboxes"])
        n = boxes.shape[0]
        assert boxes.dtype == np.float32 and boxes.shape == (n, 4)
        assert n <= 2 or name in ("MixupImage", "CutmixImage")
        assert len(out["labels"]) == n
        assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
        if n and name not in ("MixupImage", "CutmixImage"):
            assert np.asarray(out["joints2d"]).shape == (n, 3, 2)
            assert len(out["segments"]) == n


@pytest.mark.parametrize("name", ["RandAugment", "FiveCrop"])
def test_ops_that_cannot_move_boxes_refuse_annotated_samples(name):
    op = TRANSFORMS.build(dict(type=name, **({"size": 16} if name == "FiveCrop" else {})))
    with pytest.raises(DataError, match=f"{name} cannot move bboxes, joints2d, segments"):
        op(make_sample())
    s = make_sample()
    s["bboxes"], s["joints2d"], s["segments"] = np.zeros((0, 4), np.float32), [], []
    assert _is_image(op(s)["image"])


def test_sanitize_keypoints_hides_joints_outside_and_keeps_the_layout():
    s = make_sample()
    s["joints2d"][0, 0] = [-3.0, 5.0]
    out = TRANSFORMS.build(dict(type="SanitizeKeyPoints"))(s)
    assert out["joints2d"].shape == (2, 3, 2)
    assert out["joints_vis"].tolist() == [[0, 1, 1], [1, 1, 1]]


def test_detection_only_ops_pass_classification_samples_through():
    s = {"image": make_sample()["image"], "label": 1, "bboxes": np.zeros((0, 4), np.float32)}
    for name in ("RandomIoUCrop", "SanitizeBoundingBoxes"):
        assert TRANSFORMS.build(dict(type=name))(dict(s))["image"].shape == (32, 32, 3)


def test_a_torchvision_failure_at_run_time_names_the_transform():
    op = TRANSFORMS.build(dict(type="JPEG", quality=50))
    with pytest.raises(DataError, match=r"JPEG on \['image'\]: .*uint8"):
        op({"image": torch.rand(3, 8, 8)})


def test_sweep_covers_every_torchvision_v2_transform():
    from torchvision.transforms import v2

    v2_names = {
        n
        for n in dir(v2)
        if isinstance(getattr(v2, n), type)
        and issubclass(getattr(v2, n), v2.Transform)
        and n != "Transform"
    }
    assert v2_names <= set(TRANSFORMS)
    assert len(v2_names) > 50


# -- geometry against hand-computed boxes and joints -------------------------------------------


def _boxes(out):
    return np.asarray(out["bboxes"]).tolist()


def test_horizontal_flip_moves_boxes_joints_and_polygons():
    s = make_sample()
    img = s["image"].copy()
    out = TRANSFORMS.build(dict(type="RandomHorizontalFlip", p=1.0, keys=["image"]))(s)
    assert isinstance(out["image"], np.ndarray) and out["image"].shape == (32, 32, 3)
    assert np.array_equal(out["image"], img[:, ::-1])
    # Box edges x -> W - x; points (pixel indices) x -> W - 1 - x.
    assert _boxes(out) == [[22, 3, 30, 12], [4, 12, 18, 30]]
    expected = np.array(JOINTS)
    expected[..., 0] = 31 - expected[..., 0]
    assert np.allclose(out["joints2d"], expected)
    assert out["segments"][0] == [[29.0, 3.0], [21.0, 3.0], [21.0, 12.0], [29.0, 12.0]]
    assert out["segments"][1] == [[17.0, 12.0, 3.0, 12.0, 3.0, 30.0, 17.0, 30.0]]
    assert out["labels"].tolist() == [1, 2]


def test_vertical_flip_on_a_pil_image_keeps_pil():
    s = make_sample()
    s["image"] = Image.fromarray(s["image"])
    out = TRANSFORMS.build(dict(type="RandomVerticalFlip", p=1.0))(s)
    assert isinstance(out["image"], Image.Image)
    assert _boxes(out) == [[2, 20, 10, 29], [14, 2, 28, 20]]
    assert np.allclose(np.asarray(out["joints2d"])[0, :, 1], [27, 23, 20])


def test_center_crop_clips_boxes_and_hides_joints_outside():
    out = TRANSFORMS.build(dict(type="CenterCrop", size=16))(make_sample())
    assert out["image"].shape == (16, 16, 3)
    assert _boxes(out) == [[0, 0, 2, 4], [6, 4, 16, 16]]
    assert np.allclose(out["joints2d"][0], [[-5, -4], [-2, 0], [1, 3]])
    assert out["joints_vis"].tolist() == [[0, 0, 1], [1, 1, 0]]
    assert (out["height"], out["width"]) == (16, 16)


def test_crop_drops_boxes_that_leave_the_image_with_their_instance_fields():
    out = TRANSFORMS.build(dict(type="CenterCrop", size=8))(make_sample())
    assert _boxes(out) == [[2, 0, 8, 8]]
    assert out["labels"].tolist() == [2]
    assert out["joints2d"].shape == (1, 3, 2)
    assert np.allclose(out["joints2d"][0], np.array(JOINTS[1]) - 12)
    assert out["joints_vis"].tolist() == [[1, 0, 0]]  # (20, 20) - 12 = (8, 8) is outside
    assert out["segments"] == [[[2.0, 0.0, 16.0, 0.0, 16.0, 18.0, 2.0, 18.0]]]


def test_resize_scales_boxes_and_joints():
    out = TRANSFORMS.build(dict(type="Resize", size=(16, 64)))(make_sample())
    assert out["image"].shape == (16, 64, 3)
    assert _boxes(out) == [[4, 1.5, 20, 6], [28, 6, 56, 15]]
    assert np.allclose(out["joints2d"], np.array(JOINTS) * [2.0, 0.5])
    assert (out["height"], out["width"]) == (16, 64)


def test_resizes_matches_torchvision_resize():
    out = TRANSFORMS.build(dict(type="ResizeS", target_dim=(64, 16)))(make_sample())
    assert out["image"].shape == (16, 64, 3)
    assert _boxes(out) == [[4, 1.5, 20, 6], [28, 6, 56, 15]]
    assert np.allclose(out["joints2d"], np.array(JOINTS) * [2.0, 0.5])
    assert out["image_meta"]["scale_factor"] == [2.0, 0.5, 2.0, 0.5]


@pytest.mark.parametrize(
    "cfg",
    [
        dict(type="RandomCrop", size=32, padding=4, fill=0),
        dict(type="RandomCrop", size=(20, 24), pad_if_needed=True),
        dict(type="RandomAffine", degrees=0, translate=(0.2, 0.2)),
        dict(type="Pad", padding=(3, 5)),
        dict(type="RandomZoomOut", side_range=(1.0, 2.0), p=1.0),
    ],
    ids=lambda c: c["type"],
)
def test_random_geometry_moves_boxes_with_the_pixels(cfg):
    # A white block exactly under box B1 on a black image: after the op the white pixels must
    # still fill the (clipped) box, which proves image and boxes got the same random parameters.
    for seed in range(5):
        torch.manual_seed(seed)
        img = np.zeros((32, 32, 3), np.uint8)
        img[12:30, 14:28] = 255
        s = make_sample(img)
        s["bboxes"] = s["bboxes"][1:]
        s["labels"] = s["labels"][1:]
        s["joints2d"], s["joints_vis"], s["segments"] = (
            s["joints2d"][1:],
            s["joints_vis"][1:],
            [s["segments"][1]],
        )
        out = TRANSFORMS.build(cfg)(s)
        white = np.argwhere(out["image"][..., 0] == 255)
        if not len(white):
            assert len(out["bboxes"]) == 0
            continue
        y0, x0 = white.min(0)
        y1, x1 = white.max(0) + 1
        assert _boxes(out) == [[x0, y0, x1, y1]], (seed, _boxes(out), (x0, y0, x1, y1))


@pytest.mark.parametrize("name", ["RandomHorizontalFlip", "RandomFlipImage", "RandomErasingImage"])
def test_ops_that_do_nothing_this_time_leave_the_callers_arrays_alone(name):
    s = make_sample()
    s["bboxes"][0] = [-5, 2, 10, 12]  # partly outside: the output is clipped, the input is not
    boxes, image = s["bboxes"], s["image"]
    before = boxes.copy(), image.copy()
    cfg = {"RandomHorizontalFlip": dict(p=0.0), "RandomFlipImage": dict(prob=0.0)}.get(name, {})
    for _ in range(3):
        TRANSFORMS.build(dict(type=name, **cfg))(dict(s, bboxes=boxes, image=image))
    assert np.array_equal(boxes, before[0]) and np.array_equal(image, before[1])


def test_random_flip_image_swaps_left_right_joints():
    op = TRANSFORMS.build(dict(type="RandomFlipImage", prob=1.0, swap_ids=[[0], [2]]))
    s = make_sample()
    s["joints_vis"] = np.array([[1, 1, 0], [0, 1, 1]])
    out = op(s)
    assert _boxes(out) == [[22, 3, 30, 12], [4, 12, 18, 30]]
    flipped = np.array(JOINTS)
    flipped[..., 0] = 31 - flipped[..., 0]
    assert np.allclose(out["joints2d"], flipped[:, [2, 1, 0]])
    assert out["joints_vis"].tolist() == [[0, 1, 1], [1, 1, 0]]
    assert out["image_meta"]["flipped"] is True


def test_keep_ratio_pads_to_square_and_shifts_annotations():
    s = make_sample(np.zeros((16, 32, 3), np.uint8))
    s["bboxes"] = np.array([[2, 3, 10, 12]], np.float32)
    s["labels"] = np.array([1])
    s["joints2d"] = np.array([[[3.0, 4.0]]], np.float32)
    s["joints_vis"] = np.ones((1, 1))
    s["segments"] = []
    out = TRANSFORMS.build(dict(type="KeepRatio", aspect_ratio=1.0, focus_on_center=True))(s)
    assert out["image"].shape == (32, 32, 3)
    assert _boxes(out) == [[2, 11, 10, 20]]
    assert out["joints2d"].tolist() == [[[3.0, 12.0]]]
    assert out["image_meta"]["offset"] == [0, 8, 0, 8]


def test_image_and_mask_keys_get_the_same_random_parameters():
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, :8] = 255
    mask = np.zeros((32, 32), np.uint8)
    mask[:, :8] = 3
    op = TRANSFORMS.build(
        dict(type="RandomResizedCrop", size=16, scale=(0.3, 1.0), keys=["image", "mask"])
    )
    for seed in range(5):
        torch.manual_seed(seed)
        out = op({"image": img, "mask": mask})
        assert out["mask"].shape == (16, 16) and set(np.unique(out["mask"])) <= {0, 3}
        assert ((out["image"][..., 0] > 127) == (out["mask"] == 3)).mean() > 0.9


def test_gt_json_lists_are_accepted_and_filtered_together():
    s = make_sample()
    for k in ("bboxes", "labels", "joints2d", "joints_vis"):
        s[k] = np.asarray(s[k]).tolist()
    out = TRANSFORMS.build(dict(type="CenterCrop", size=8))(s)
    assert _boxes(out) == [[2, 0, 8, 8]]
    assert out["labels"] == [2] and out["joints_vis"] == [[1, 0, 0]]
    assert np.allclose(out["joints2d"], [np.array(JOINTS[1]) - 12])


def test_label_map_segments_follow_a_flip_with_nearest_values():
    s = make_sample()
    seg = np.zeros((32, 32), np.uint8)
    seg[:, :4] = 7
    s["segments"] = seg
    out = TRANSFORMS.build(dict(type="RandomHorizontalFlip", p=1.0))(s)
    assert (out["segments"][:, -4:] == 7).all() and (out["segments"][:, :-4] == 0).all()
    out = TRANSFORMS.build(dict(type="Resize", size=16))(out)
    assert out["segments"].shape == (16, 16) and set(np.unique(out["segments"])) == {0, 7}


# -- the seed config ---------------------------------------------------------------------------

SEED_PIPELINE = [
    dict(type="Meta", keys=["image_file", "tag"]),
    dict(type="INumpyToPIL", keys=["image"], mode="RGB"),
    dict(type="RandomHorizontalFlip", keys=["image"]),
    dict(
        type="RandomCrop",
        size=(32, 32),
        padding=int(32 * 0.125),
        fill=128,
        padding_mode="constant",
        keys=["image"],
    ),
    dict(type="ToTensor", keys=["image"]),
    dict(type="Normalize", mean=SEED_MEAN, std=SEED_STD, keys=["image"]),
]


@pytest.mark.parametrize("encoded", [False, True], ids=["numpy", "bytes"])
def test_seed_pipeline_gives_a_normalised_chw_tensor_and_meta(encoded):
    pipeline = build_pipeline(SEED_PIPELINE, path="data.train.pipeline")
    s = make_sample()
    if encoded:
        s["image"] = png_bytes(s["image"])
    out = pipeline(s)
    assert isinstance(out["image"], torch.Tensor)
    assert out["image"].shape == (3, 32, 32) and out["image"].dtype == torch.float32
    assert out["image_meta"] == {"image_file": "images/a.png", "tag": "train"}
    assert out["label"] == 3
    # Padding value 128 normalises to (128/255 - mean) / std; pixels stay in the expected range.
    assert out["image"].min() >= (0 - max(SEED_MEAN)) / min(SEED_STD) - 1e-4
    assert out["image"].max() <= (1 - min(SEED_MEAN)) / min(SEED_STD) + 1e-4


def test_seed_pipeline_batches_with_the_default_collate():
    from torch.utils.data import default_collate

    pipeline = build_pipeline(SEED_PIPELINE)
    batch = default_collate(
        [
            {k: pipeline(make_sample())[k] for k in ("image", "label", "image_meta")}
            for _ in range(4)
        ]
    )
    assert batch["image"].shape == (4, 3, 32, 32)
    assert batch["image_meta"]["tag"] == ["train"] * 4


def test_val_pipeline_is_deterministic_and_matches_manual_normalisation():
    pipeline = build_pipeline([SEED_PIPELINE[0], SEED_PIPELINE[1], *SEED_PIPELINE[4:]])
    s = make_sample()
    expected = (
        torch.from_numpy(s["image"]).permute(2, 0, 1).float() / 255
        - torch.tensor(SEED_MEAN).view(3, 1, 1)
    ) / torch.tensor(SEED_STD).view(3, 1, 1)
    assert torch.allclose(pipeline(s)["image"], expected, atol=1e-5)


def test_pipeline_survives_a_round_trip_to_a_dataloader_worker():
    # DataLoader workers started with 'spawn' receive the pipeline serialised; every generated
    # torchvision wrapper must be importable by name for that.
    pipeline = build_pipeline(SEED_PIPELINE)
    clone = pickle.loads(pickle.dumps(pipeline))  # noqa: S301 - our own object, same process
    assert clone(make_sample())["image"].shape == (3, 32, 32)


# -- format ops --------------------------------------------------------------------------------


def test_decode_image_turns_png_bytes_into_rgb_numpy():
    arr = make_sample()["image"]
    out = TRANSFORMS.build(dict(type="DecodeImage"))({"image": png_bytes(arr)})
    assert out["image"].dtype == np.uint8 and np.array_equal(out["image"], arr)
    assert (out["height"], out["width"]) == (32, 32)


def test_decode_image_with_to_rgb_false_gives_bgr():
    arr = make_sample()["image"]
    out = TRANSFORMS.build(dict(type="DecodeImage", to_rgb=False))({"image": png_bytes(arr)})
    assert np.array_equal(out["image"], arr[..., ::-1])


def test_decode_image_on_garbage_names_the_problem():
    with pytest.raises(DataError, match="cannot decode image bytes"):
        TRANSFORMS.build(dict(type="DecodeImage"))({"image": b"not an image"})


def test_inumpytopil_accepts_encoded_bytes():
    arr = make_sample()["image"]
    out = TRANSFORMS.build(dict(type="INumpyToPIL", keys=["image"], mode="RGB"))(
        {"image": png_bytes(arr)}
    )
    assert isinstance(out["image"], Image.Image) and np.array_equal(np.asarray(out["image"]), arr)
    back = TRANSFORMS.build(dict(type="IPILToNumpy"))(out)
    assert np.array_equal(back["image"], arr)


def test_torchvision_op_on_encoded_bytes_decodes_first():
    arr = make_sample()["image"]
    s = make_sample(png_bytes(arr))
    out = TRANSFORMS.build(dict(type="RandomHorizontalFlip", p=1.0))(s)
    assert np.array_equal(out["image"], arr[:, ::-1])


def test_totensor_converts_labels_and_numpy_images():
    out = TRANSFORMS.build(dict(type="ToTensor", keys=["image", "label", "bboxes"]))(make_sample())
    assert out["image"].shape == (3, 32, 32) and out["image"].max() <= 1.0
    assert out["label"].dtype == torch.int64 and out["label"].item() == 3
    assert out["bboxes"].shape == (2, 4)


def test_meta_on_a_missing_field_names_it():
    with pytest.raises(DataError, match="Meta: sample has no field 'nope'"):
        TRANSFORMS.build(dict(type="Meta", keys=["nope"]))(make_sample())


def test_normalize_before_totensor_says_what_to_do():
    s = {"image": torch.zeros(3, 4, 4, dtype=torch.uint8)}
    with pytest.raises(DataError, match="put ToTensor before Normalize"):
        TRANSFORMS.build(dict(type="Normalize", mean=SEED_MEAN, std=SEED_STD))(s)


# -- config errors -----------------------------------------------------------------------------


def test_unknown_transform_names_the_config_path_and_suggests():
    with pytest.raises(RegistryError) as err:
        build_pipeline(
            [dict(type="Meta", keys=["tag"]), dict(type="RandomHorizontalFlp")],
            path="data.train.pipeline",
        )
    msg = str(err.value)
    assert "data.train.pipeline.1.type" in msg and "'RandomHorizontalFlip'" in msg
    assert "\n" not in msg


def test_bad_keyword_names_the_key_and_suggests():
    with pytest.raises(RegistryError) as err:
        build_pipeline([dict(type="RandomCrop", size=32, paddin=4)], path="data.train.pipeline")
    msg = str(err.value)
    assert "data.train.pipeline.0.paddin" in msg and "'padding'" in msg


def test_missing_required_argument_is_named():
    with pytest.raises(
        RegistryError, match=r"data.val.pipeline.0: RandomCrop needs argument 'size'"
    ):
        build_pipeline([dict(type="RandomCrop")], path="data.val.pipeline")


def test_a_dataset_built_from_config_gets_its_pipeline_path_in_errors():
    from antgo_mlflow.registry import Registry

    datasets = Registry("dataset")

    @datasets.register_module()
    class TinyDataset:
        def __init__(self, pipeline=(), weak_pipeline=()):
            self.pipeline = build_pipeline(pipeline)
            self.weak = build_pipeline(weak_pipeline, field="weak_pipeline")

    cfg = dict(type="TinyDataset", pipeline=[dict(type="Identity")])
    assert len(datasets.build(cfg, path="data.train").pipeline) == 1
    with pytest.raises(RegistryError, match=r"^data.train.pipeline.1.type: unknown transform"):
        datasets.build(
            dict(type="TinyDataset", pipeline=[{"type": "Identity"}, {"type": "Flip"}]),
            path="data.train",
        )
    with pytest.raises(
        RegistryError, match=r"^data.val.weak_pipeline.0.pp: RandomApply has no argument"
    ):
        datasets.build(
            dict(
                type="TinyDataset",
                weak_pipeline=[dict(type="RandomApply", p=0.5, transforms=[], pp=1)],
            ),
            path="data.val",
        )


def test_nested_pipeline_errors_name_the_nested_path():
    with pytest.raises(RegistryError, match=r"data.train.pipeline.0.transforms.1.type"):
        build_pipeline(
            [dict(type="RandomApply", transforms=[dict(type="Identity"), dict(type="Nope")])],
            path="data.train.pipeline",
        )


def test_bad_argument_value_is_one_line_registry_error():
    with pytest.raises(RegistryError, match=r"data.train.pipeline.0: building ResizeS failed"):
        build_pipeline([dict(type="ResizeS", target_dim=[0, 4])], path="data.train.pipeline")


# -- mixing ------------------------------------------------------------------------------------


def test_mixup_blends_a_partner_and_makes_soft_labels():
    torch.manual_seed(0)
    random.seed(0)
    s = make_sample(np.zeros((32, 32, 3), np.uint8))
    partner = make_sample(np.full((32, 32, 3), 200, np.uint8))
    partner["label"] = 5
    s["mixup"] = partner
    out = TRANSFORMS.build(dict(type="MixupImage", prob=1.0, num_classes=10))(s)
    assert "mixup" not in out
    label = out["label"]
    assert label.dtype == np.float32 and label.shape == (10,)
    assert abs(label.sum() - 1) < 1e-6 and label[3] > 0 and label[5] > 0
    # The image is the same blend as the label: pixel = 200 * weight of the partner.
    assert abs(out["image"][0, 0, 0] - 200 * label[5]) <= 1
    assert (
        len(out["bboxes"]) == 4 and len(out["labels"]) == 4 and out["joints2d"].shape == (4, 3, 2)
    )


def test_mixup_without_a_partner_still_gives_one_hot_labels():
    out = TRANSFORMS.build(dict(type="MixupImage", num_classes=10))(make_sample())
    assert out["label"].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]


def test_cutmix_label_weight_is_the_area_kept():
    random.seed(1)
    s = make_sample(np.zeros((32, 32, 3), np.uint8))
    partner = make_sample(np.full((16, 16, 3), 255, np.uint8))  # resized to 32x32 first
    partner["label"] = 5
    s["cutmix"] = partner
    out = TRANSFORMS.build(dict(type="CutmixImage", prob=1.0, num_classes=10))(s)
    pasted = (out["image"][..., 0] == 255).mean()
    assert abs(out["label"][5] - pasted) < 1e-6 and abs(out["label"][3] - (1 - pasted)) < 1e-6


@pytest.mark.parametrize("name", ["MixupImage", "CutmixImage"])
def test_antgo_mixing_works_on_a_batch(name):
    random.seed(0)
    batch = {"image": torch.rand(4, 3, 8, 8), "label": torch.tensor([0, 1, 2, 3])}
    out = TRANSFORMS.build(dict(type=name, prob=1.0, num_classes=4))(batch)
    assert out["image"].shape == (4, 3, 8, 8)
    assert out["label"].shape == (4, 4) and torch.allclose(out["label"].sum(1), torch.ones(4))


# -- with the real shard dataset ---------------------------------------------------------------


def test_seed_style_and_detection_pipelines_run_inside_tfdataset(tmp_path):
    from torch.utils.data import DataLoader

    from antgo_mlflow.registry import DATASETS
    from antgo_mlflow.tools.package_tfrecord import package_tfrecord
    from tests.data.gtfactory import make_dataset

    gt = make_dataset(tmp_path / "ds", n=4, rich=True, classes=["cat", "dog", "bird"])
    shards = package_tfrecord(str(gt), tmp_path / "tf", "train", num=5)
    seed_like = [dict(SEED_PIPELINE[i]) for i in range(len(SEED_PIPELINE))]
    seed_like[3] = dict(seed_like[3], size=(8, 10))  # the factory's images are 8x10
    ds = DATASETS.build(
        dict(
            type="TFDataset",
            data_path_list=[str(shards.tgt)],
            pipeline=seed_like,
            inputs_def={"fields": ["image", "label", "image_meta"]},
        ),
        path="data.train",
    )
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["image"].shape == (4, 3, 8, 10) and batch["image"].dtype == torch.float32
    assert batch["image_meta"]["image_file"] == [f"img/{i}.png" for i in range(4)]

    detection = DATASETS.build(
        dict(
            type="TFDataset",
            data_path_list=[str(shards.tgt)],
            pipeline=[
                dict(type="DecodeImage"),
                dict(type="RandomHorizontalFlip", p=1.0),
                dict(type="Resize", size=(16, 20)),
            ],
        )
    )
    sample = detection[1]
    assert sample["image"].shape == (16, 20, 3)
    # [1, 2, 5.5, 7] in a 10-wide image: flip -> [4.5, 2, 9, 7], then x2 in both directions.
    assert _boxes(sample) == [[9, 4, 18, 14], [14, 0, 20, 8]]
    assert (sample["height"], sample["width"]) == (16, 20)
