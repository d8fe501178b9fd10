"""``RetinaNet`` (MODELS): torchvision's RetinaNet behind the detector contract.

Anchors: ``scales_per_octave`` sizes x ``aspect_ratios`` per level, the base size being
``anchor_scale`` x the level's stride (torchvision: 32 px at stride 8). Crowd boxes
(``box_visibility`` 0): anchors matched to one, or centred inside one without another match,
are set "between thresholds", which RetinaNet's loss already ignores.
"""

from __future__ import annotations

import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.retinanet import RetinaNet as TVRetinaNet
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import boxes as box_ops

from antgo_mlflow.errors import ConfigError
from antgo_mlflow.models._build import config_path
from antgo_mlflow.models.detectors.base import TorchvisionDetector
from antgo_mlflow.models.detectors.fcos import crowd_ignore
from antgo_mlflow.registry import MODELS


class _RetinaNet(TVRetinaNet):
    """torchvision's RetinaNet whose anchor matching ignores crowd regions."""

    def compute_loss(self, targets, head_outputs, anchors):
        matched_idxs = []
        for anchors_per_image, target in zip(anchors, targets):
            if target["boxes"].numel() == 0:
                matched_idxs.append(
                    torch.full(
                        (anchors_per_image.size(0),),
                        -1,
                        dtype=torch.int64,
                        device=anchors_per_image.device,
                    )
                )
                continue
            quality = box_ops.box_iou(target["boxes"], anchors_per_image)
            matched = self.proposal_matcher(quality)
            centers = (anchors_per_image[:, :2] + anchors_per_image[:, 2:]) / 2
            matched, ignore = crowd_ignore(matched, target, centers)
            matched[ignore] = self.proposal_matcher.BETWEEN_THRESHOLDS
            matched_idxs.append(matched)
        return self.head.compute_loss(targets, head_outputs, anchors, matched_idxs)


@MODELS.register_module()
class RetinaNet(TorchvisionDetector):
    """torchvision's RetinaNet on a MODELS backbone (see ``TorchvisionDetector`` for the arguments).

    head: ``anchor_scale`` (4), ``scales_per_octave`` (3), ``aspect_ratios`` ((0.5, 1.0, 2.0)),
    ``fg_iou_thresh`` (0.5), ``bg_iou_thresh`` (0.4), ``norm`` (``group``: GroupNorm in the
    head, torchvision's v2 -- from scratch the plain v1 head, ``none``, trains unstably).
    test_cfg: ``score_thresh`` (0.05), ``nms_thresh`` (0.5), ``detections_per_img`` (100),
    ``topk_candidates`` (1000).
    """

    HEAD_DEFAULTS = {
        "anchor_scale": 4.0,
        "scales_per_octave": 3,
        "aspect_ratios": (0.5, 1.0, 2.0),
        "fg_iou_thresh": 0.5,
        "bg_iou_thresh": 0.4,
        "norm": "group",
    }
    TEST_DEFAULTS = {
        "score_thresh": 0.05,
        "nms_thresh": 0.5,
        "detections_per_img": 100,
        "topk_candidates": 1000,
    }
    LOSS_NAMES = {"classification": "cls", "bbox_regression": "box"}

    def dense_predictions(self, feats, image):
        det = self.detector
        out = det.head(feats)
        anchors = self.level_anchors(feats, image)
        sizes = [len(a) for a in anchors]
        boxes, scores = [], []
        for reg, cls, anc in zip(
            out["bbox_regression"].split(sizes, 1), out["cls_logits"].split(sizes, 1), anchors
        ):
            n, length = reg.shape[0], reg.shape[1]
            anc = anc[None].expand(n, -1, -1).reshape(-1, 4)
            decoded = det.box_coder.decode_single(reg.reshape(-1, 4), anc)
            boxes.append(decoded.reshape(n, length, 4))
            scores.append(torch.sigmoid(cls))
        return boxes, scores

    def build_detector(self, backbone, num_classes, head, test):
        import math
        from functools import partial

        from torch import nn

        path = config_path("model")
        if head["norm"] not in ("none", "group"):
            raise ConfigError(f"{path}.head.norm: expected 'none' or 'group', got {head['norm']!r}")
        octaves = int(head["scales_per_octave"])
        sizes = tuple(
            tuple(float(head["anchor_scale"]) * s * 2 ** (k / octaves) for k in range(octaves))
            for s in backbone.strides
        )
        ratios = (tuple(float(r) for r in head["aspect_ratios"]),) * len(sizes)
        anchors = AnchorGenerator(sizes, ratios)
        groups = math.gcd(32, int(backbone.out_channels))
        norm = partial(nn.GroupNorm, groups) if head["norm"] == "group" else None
        retina_head = RetinaNetHead(
            backbone.out_channels,
            anchors.num_anchors_per_location()[0],
            num_classes,
            norm_layer=norm,
        )
        return _RetinaNet(
            backbone,
            num_classes,
            anchor_generator=anchors,
            head=retina_head,
            fg_iou_thresh=float(head["fg_iou_thresh"]),
            bg_iou_thresh=float(head["bg_iou_thresh"]),
            score_thresh=float(test["score_thresh"]),
            nms_thresh=float(test["nms_thresh"]),
            detections_per_img=int(test["detections_per_img"]),
            topk_candidates=int(test["topk_candidates"]),
        )
