"""``FasterRCNN`` (MODELS): torchvision's two-stage Faster R-CNN behind the detector contract.

The RPN's anchors are ``anchor_scale`` x the level's stride (torchvision: 32 px at stride 4) in
each ``aspect_ratios``; the RoI head pools the backbone's own levels (not the extra ``pool`` one)
with ``MultiScaleRoIAlign``. torchvision's class 0 is the background, so labels are shifted by
one on the way in and out. ``forward`` (the exported graph) runs image by image: the batch
size of an ONNX export is fixed. Crowd boxes (``box_visibility`` 0) get the label -1: proposals
matched to them are never sampled by the box head (neither foreground nor background); the RPN
treats them as objects.
"""

from __future__ import annotations

import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FasterRCNN as TVFasterRCNN
from torchvision.ops import MultiScaleRoIAlign

from antgo_mlflow.models.detectors.base import TorchvisionDetector, pad_detections
from antgo_mlflow.registry import MODELS


@MODELS.register_module()
class FasterRCNN(TorchvisionDetector):
    """torchvision's Faster R-CNN on a MODELS backbone (see ``TorchvisionDetector``).

    head: ``anchor_scale`` (8), ``aspect_ratios`` ((0.5, 1.0, 2.0)), the RPN's
    ``rpn_pre_nms_top_n_train/test`` (2000/1000), ``rpn_post_nms_top_n_train/test`` (2000/1000),
    ``rpn_nms_thresh`` (0.7), ``rpn_fg_iou_thresh`` / ``rpn_bg_iou_thresh`` (0.7/0.3),
    ``rpn_batch_size_per_image`` (256), the box head's ``box_fg_iou_thresh`` /
    ``box_bg_iou_thresh`` (0.5/0.5), ``box_batch_size_per_image`` (512), ``representation_size``
    (1024) and ``roi_output_size`` (7).
    test_cfg: ``score_thresh`` (0.05), ``nms_thresh`` (0.5), ``detections_per_img`` (100).
    """

    label_offset = 1
    HEAD_DEFAULTS = {
        "anchor_scale": 8.0,
        "aspect_ratios": (0.5, 1.0, 2.0),
        "rpn_pre_nms_top_n_train": 2000,
        "rpn_pre_nms_top_n_test": 1000,
        "rpn_post_nms_top_n_train": 2000,
        "rpn_post_nms_top_n_test": 1000,
        "rpn_nms_thresh": 0.7,
        "rpn_fg_iou_thresh": 0.7,
        "rpn_bg_iou_thresh": 0.3,
        "rpn_batch_size_per_image": 256,
        "box_fg_iou_thresh": 0.5,
        "box_bg_iou_thresh": 0.5,
        "box_batch_size_per_image": 512,
        "representation_size": 1024,
        "roi_output_size": 7,
    }
    TEST_DEFAULTS = {"score_thresh": 0.05, "nms_thresh": 0.5, "detections_per_img": 100}
    LOSS_NAMES = {
        "loss_objectness": "rpn_obj",
        "loss_rpn_box_reg": "rpn_box",
        "loss_classifier": "cls",
        "loss_box_reg": "box",
    }

    def build_detector(self, backbone, num_classes, head, test):
        from torchvision.models.detection.faster_rcnn import TwoMLPHead

        sizes = tuple((float(head["anchor_scale"]) * s,) for s in backbone.strides)
        ratios = (tuple(float(r) for r in head["aspect_ratios"]),) * len(sizes)
        levels = [n for n in backbone.level_names if n.isdigit()]
        size = int(head["roi_output_size"])
        pool = MultiScaleRoIAlign(featmap_names=levels, output_size=size, sampling_ratio=2)
        box_head = TwoMLPHead(backbone.out_channels * size * size, int(head["representation_size"]))
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor

        return TVFasterRCNN(
            backbone,
            num_classes=None,
            rpn_anchor_generator=AnchorGenerator(sizes, ratios),
            box_roi_pool=pool,
            box_head=box_head,
            box_predictor=FastRCNNPredictor(int(head["representation_size"]), num_classes),
            rpn_pre_nms_top_n_train=int(head["rpn_pre_nms_top_n_train"]),
            rpn_pre_nms_top_n_test=int(head["rpn_pre_nms_top_n_test"]),
            rpn_post_nms_top_n_train=int(head["rpn_post_nms_top_n_train"]),
            rpn_post_nms_top_n_test=int(head["rpn_post_nms_top_n_test"]),
            rpn_nms_thresh=float(head["rpn_nms_thresh"]),
            rpn_fg_iou_thresh=float(head["rpn_fg_iou_thresh"]),
            rpn_bg_iou_thresh=float(head["rpn_bg_iou_thresh"]),
            rpn_batch_size_per_image=int(head["rpn_batch_size_per_image"]),
            box_fg_iou_thresh=float(head["box_fg_iou_thresh"]),
            box_bg_iou_thresh=float(head["box_bg_iou_thresh"]),
            box_batch_size_per_image=int(head["box_batch_size_per_image"]),
            box_score_thresh=float(test["score_thresh"]),
            box_nms_thresh=float(test["nms_thresh"]),
            box_detections_per_img=int(test["detections_per_img"]),
        )

    def predict_boxes(self, image: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """torchvision's two-stage eval path (see ``TorchvisionDetector.predict_boxes``)."""
        return self.torchvision_predictions(image)

    def forward(self, image: torch.Tensor, **kwargs) -> torch.Tensor:
        """``TorchvisionDetector.forward``'s ``detections``, image by image: the RoI stage takes
        a list of per-image proposals, so an exported graph has a fixed batch size."""
        return pad_detections(
            self.torchvision_predictions(image), int(self.detector.roi_heads.detections_per_img)
        )

    def adapt_targets(self, targets: list[dict]) -> list[dict]:
        """Crowd boxes get label -1 (never sampled by the box head)."""
        for target in targets:
            crowd = target.pop("crowd", None)
            if crowd is not None and bool(crowd.any()):
                target["labels"] = torch.where(
                    crowd, torch.full_like(target["labels"], -1), target["labels"]
                )
        return targets
