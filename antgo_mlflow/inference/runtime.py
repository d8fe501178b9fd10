"""What runs a preprocessed NCHW batch: an ONNX Runtime session or an in-process torch module.

``OnnxRuntime`` gives the graph's first output; ``TorchRuntime`` calls the model contract
(``val_step`` / ``extract_features``, falling back to today's ``predict`` / ``extract_feat`` /
``forward`` for models without them). ``FrozenModule`` wraps a torch model as a teacher: eval
mode that ``.train()`` does not undo, no gradients, logits from ``forward(image)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from antgo_mlflow.errors import DataError


def file_metadata(session) -> dict[str, Any]:
    """The ``antgo.*`` entries an ONNX file carries itself (``export_onnx`` writes the task,
    class count and names), JSON values decoded; other entries are left out."""
    import json

    out: dict[str, Any] = {}
    raw = session.get_modelmeta().custom_metadata_map or {}
    for key, value in raw.items():
        if not key.startswith("antgo."):
            continue
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


class OnnxRuntime:
    """An ONNX file run with ONNX Runtime (CPU; CUDA first when asked for and available)."""

    flavor = "onnx"
    module = None

    def __init__(self, path: str | Path, device: str = "cpu"):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in (
            ort.get_available_providers()
        ):
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # ORT raises its own types for unreadable files
            raise DataError(
                f"{path}: not a readable ONNX model ({str(exc).splitlines()[0]})"
            ) from None
        self.input = self.session.get_inputs()[0]
        shape = self.input.shape
        self.input_size = (
            (shape[2], shape[3])
            if len(shape) == 4 and all(isinstance(d, int) for d in shape[2:])
            else None
        )
        self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
        out = self.session.get_outputs()[0].shape
        self.output_width = out[1] if len(out) == 2 and isinstance(out[1], int) else None
        self.metadata = file_metadata(self.session)

    def outputs(self, batch: np.ndarray) -> np.ndarray:
        """The graph's first output for an NCHW float32 batch."""
        name = self.input.name
        step = self.fixed_batch
        if step is not None and batch.shape[0] != step:  # exported without a dynamic batch
            return np.concatenate(
                [
                    self.session.run(None, {name: batch[i : i + step]})[0]
                    for i in range(0, len(batch), step)
                ]
            )
        return self.session.run(None, {name: batch})[0]


class TorchRuntime:
    """A torch module in eval mode on ``device``, called under ``torch.inference_mode``."""

    flavor = "pytorch"

    def __init__(self, module, device: str = "cpu"):
        import torch

        self.device = torch.device(device)
        try:
            module = module.to(self.device)
            module.eval()
        except NotImplementedError:  # a pt2 (torch.export) module: exported in eval mode already
            pass
        self.module = module
        self.input_size = None
        self.output_width = None

    def _tensor(self, batch):
        import torch

        x = torch.from_numpy(batch) if isinstance(batch, np.ndarray) else batch
        return x.to(self.device)

    def call(self, fn: Callable[[Any], Any], batch) -> Any:
        """``fn(tensor)`` without autograd."""
        import torch

        with torch.inference_mode():
            return fn(self._tensor(batch))

    def outputs(self, batch) -> np.ndarray:
        """What ``forward(image)`` returns (the first element of a tuple), as numpy."""
        out = self.call(self.module, batch)
        if isinstance(out, (list, tuple)):
            out = out[0]
        return out.detach().float().cpu().numpy()

    def probabilities(self, batch, image_meta: list[dict] | None = None) -> np.ndarray | None:
        """(N, C) class probabilities from ``val_step`` (``pred_score``) or ``predict``; None if
        the model has neither (the caller then applies a softmax to ``outputs``)."""
        module = self.module
        if callable(getattr(module, "val_step", None)):

            def run(x):
                preds = module.val_step({"image": x, "image_meta": image_meta or []})
                return np.stack([_numpy(p["pred_score"]) for p in preds])

            return self.call(run, batch).astype(np.float64)
        if callable(getattr(module, "predict", None)):
            return _numpy(self.call(module.predict, batch)).astype(np.float64)
        return None

    def features(self, batch, image_meta: list[dict] | None = None) -> np.ndarray | None:
        """(N, D) embeddings from ``extract_features(batch)`` (or today's ``extract_feat``)."""
        module = self.module
        if callable(getattr(module, "extract_features", None)):
            out = self.call(
                lambda x: module.extract_features({"image": x, "image_meta": image_meta or []}),
                batch,
            )
        elif callable(getattr(module, "extract_feat", None)):
            out = self.call(module.extract_feat, batch)
        else:
            return None
        if isinstance(out, (list, tuple)):
            out = out[-1]  # multi-level features: the last level is the one before the head
        out = _numpy(out)
        return out.reshape(out.shape[0], -1).astype(np.float32)


def _numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        return value.detach().float().cpu().numpy()
    return np.asarray(value)


def frozen(module):
    """``module`` frozen as a teacher: eval mode kept through ``.train()``, no gradients."""
    import torch

    class FrozenModule(torch.nn.Module):
        """A frozen model: ``forward(image)`` gives what the model's forward gives (logits)."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            for p in inner.parameters():
                p.requires_grad_(False)
            self.train(False)

        def train(self, mode: bool = True):
            # A teacher inside a student's model stays in eval mode when the Runner calls
            # model.train(): its BatchNorm statistics and dropout must not move.
            self.training = False
            try:
                self.inner.eval()
            except NotImplementedError:  # pt2 modules are exported in eval mode
                pass
            return self

        def forward(self, image):
            with torch.no_grad():
                return self.inner(image)

    return FrozenModule(module)
