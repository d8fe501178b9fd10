"""``FCOS`` (MODELS): torchvision's anchor-free FCOS behind the detector contract.

One location per feature-map cell; the anchor "size" of a level is its stride (what torchvision's
FCOS assumes), so a level is responsible for objects whose largest side distance lies between 4
and 8 strides (the first level from 0, the last up to infinity). Crowd boxes (``box_visibility``
0) are matched like the others; locations matched to one, or whose centre lies inside one
without another match, are ignored: no classification, box or centre-ness loss.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOS as TVFCOS
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from antgo_mlflow.errors import ConfigError
from antgo_mlflow.models._build import config_path
from antgo_mlflow.models.detectors.base import TorchvisionDetector
from antgo_mlflow.registry import MODELS


def crowd_ignore(
    matched: torch.Tensor, target: dict, centers: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(matched, ignore)``: matches to crowd boxes removed and flagged, plus unmatched centres
    inside a crowd box flagged (COCO ignores detections on crowd regions)."""
    crowd = target.get("crowd")
    ignore = torch.zeros_like(matched, dtype=torch.bool)
    if crowd is None or not bool(crowd.any()):
        return matched, ignore
    ignore = (matched >= 0) & crowd[matched.clamp(min=0)]
    boxes = target["boxes"][crowd]
    x, y = centers[:, 0:1], centers[:, 1:2]
    inside = (
        (x > boxes[None, :, 0])
        & (x < boxes[None, :, 2])
        & (y > boxes[None, :, 1])
        & (y < boxes[None, :, 3])
    ).any(dim=1)
    ignore |= inside & (matched < 0)
    return torch.where(ignore, torch.full_like(matched, -1), matched), ignore


class _FCOSHead(FCOSHead):
    """torchvision's FCOSHead whose loss skips the locations ``crowd_ignore`` flags."""

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
        cls_logits = head_outputs["cls_logits"]  # [N, HWA, C]
        bbox_regression = head_outputs["bbox_regression"]  # [N, HWA, 4]
        bbox_ctrness = head_outputs["bbox_ctrness"]  # [N, HWA, 1]
        all_classes, all_boxes, all_valid = [], [], []
        for target, matched, anchors_per_image in zip(targets, matched_idxs, anchors):
            centers = (anchors_per_image[:, :2] + anchors_per_image[:, 2:]) / 2
            matched, ignore = crowd_ignore(matched, target, centers)
            if len(target["labels"]) == 0:
                classes = target["labels"].new_zeros((len(matched),))
                boxes = target["boxes"].new_zeros((len(matched), 4))
            else:
                classes = target["labels"][matched.clip(min=0)]
                boxes = target["boxes"][matched.clip(min=0)]
            all_classes.append(torch.where(matched < 0, torch.full_like(classes, -1), classes))
            all_boxes.append(boxes)
            all_valid.append(~ignore)
        gt_boxes, gt_classes = torch.stack(all_boxes), torch.stack(all_classes)
        valid, anchors = torch.stack(all_valid), torch.stack(anchors)
        foreground = gt_classes >= 0
        num_foreground = max(1, int(foreground.sum()))

        target_classes = torch.zeros_like(cls_logits)
        target_classes[foreground, gt_classes[foreground]] = 1.0
        loss_cls = sigmoid_focal_loss(cls_logits, target_classes, reduction="none").sum(-1)
        loss_cls = (loss_cls * valid).sum()

        pred_boxes = self.box_coder.decode(bbox_regression, anchors)
        loss_box = generalized_box_iou_loss(
            pred_boxes[foreground], gt_boxes[foreground], reduction="sum"
        )
        reg_targets = self.box_coder.encode(anchors, gt_boxes)
        if len(reg_targets) == 0:
            ctrness = reg_targets.new_zeros(reg_targets.size()[:-1])
        else:
            lr, tb = reg_targets[:, :, [0, 2]], reg_targets[:, :, [1, 3]]
            ctrness = torch.sqrt(
                (lr.min(dim=-1)[0] / lr.max(dim=-1)[0]) * (tb.min(dim=-1)[0] / tb.max(dim=-1)[0])
            )
        loss_ctr = nn.functional.binary_cross_entropy_with_logits(
            bbox_ctrness.squeeze(dim=2)[foreground], ctrness[foreground], reduction="sum"
        )
        return {
            "cls": loss_cls / num_foreground,
            "box": loss_box / num_foreground,
            "ctr": loss_ctr / num_foreground,
        }


@MODELS.register_module()
class FCOS(TorchvisionDetector):
    """torchvision's FCOS on a MODELS backbone (see ``TorchvisionDetector`` for the arguments).

    head: ``num_convs`` (4: conv layers of each head branch), ``center_sampling_radius`` (1.5
    strides), ``prior_probability`` (0.01: initial foreground probability).
    test_cfg: ``score_thresh`` (0.05), ``nms_thresh`` (0.6), ``detections_per_img`` (100),
    ``topk_candidates`` (1000 per level).

    Example:
        >>> model = MODELS.build(dict(type="FCOS", num_classes=3,
        ...     backbone=dict(type="TinyFPN", out_strides=(8, 16, 32))))
    """

    HEAD_DEFAULTS = {"num_convs": 4, "center_sampling_radius": 1.5, "prior_probability": 0.01}
    TEST_DEFAULTS = {
        "score_thresh": 0.05,
        "nms_thresh": 0.6,
        "detections_per_img": 100,
        "topk_candidates": 1000,
    }

    def dense_predictions(self, feats, image):
        det = self.detector
        out = det.head(feats)
        anchors = self.level_anchors(feats, image)
        sizes = [len(a) for a in anchors]
        boxes, scores = [], []
        for reg, cls, ctr, anc in zip(
            out["bbox_regression"].split(sizes, 1),
            out["cls_logits"].split(sizes, 1),
            out["bbox_ctrness"].split(sizes, 1),
            anchors,
        ):
            boxes.append(det.box_coder.decode(reg, anc[None].expand(reg.shape[0], -1, -1)))
            scores.append(torch.sqrt(torch.sigmoid(cls) * torch.sigmoid(ctr)))
        return boxes, scores

    def build_detector(self, backbone, num_classes, head, test):
        import math

        if backbone.out_channels % 32:
            raise ConfigError(
                f"{config_path('model')}.backbone.out_channels: FCOS's head normalises with "
                f"GroupNorm(32), so it must be a multiple of 32, got {backbone.out_channels}"
            )
        levels = len(backbone.strides)
        anchors = AnchorGenerator(tuple((int(s),) for s in backbone.strides), ((1.0,),) * levels)
        fcos_head = _FCOSHead(backbone.out_channels, 1, num_classes, int(head["num_convs"]))
        prior = float(head["prior_probability"])
        nn.init.constant_(
            fcos_head.classification_head.cls_logits.bias, -math.log((1 - prior) / prior)
        )
        return TVFCOS(
            backbone,
            num_classes,
            anchor_generator=anchors,
            head=fcos_head,
            center_sampling_radius=float(head["center_sampling_radius"]),
            score_thresh=float(test["score_thresh"]),
            nms_thresh=float(test["nms_thresh"]),
            detections_per_img=int(test["detections_per_img"]),
            topk_candidates=int(test["topk_candidates"]),
        )
