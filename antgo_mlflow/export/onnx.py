"""Export a model's ``predict`` to ONNX and check it against PyTorch with ONNX Runtime.

The exported graph maps ``image`` (N, 3, H, W) float32 to ``pred`` (N, C) class probabilities
(or the model's own ``OUTPUT_NAME``: a detector's ``detections`` (N, K, 6)), the batch axis
dynamic by default. The torch.export-based (dynamo) exporter is tried first
(opset >= 18); when it fails, or for an older opset, the TorchScript exporter (``dynamo=False``)
is used instead. Every export is run with ONNX Runtime on the same inputs as
PyTorch (batch 1 and, when dynamic, batch 3); the largest absolute difference is reported and
must be <= ``atol`` (1e-4; a model with ``output_difference`` compares its own way, within
its ``EXPORT_ATOL``: detections after matching boxes, 1e-3) or :class:`ExportCheckError` is raised.

Example:
    >>> result = export_onnx(model, "model.onnx", input_shape=(1, 3, 32, 32))
    >>> result.max_abs_diff  # 2.9e-07
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from antgo_mlflow.errors import AntgoError, UsageError

INPUT_NAME = "image"
OUTPUT_NAME = "pred"
DEFAULT_OPSET = 18
ATOL = 1e-4
# The dynamic batch dimension's upper bound (torch.export needs one; ONNX keeps it symbolic).
MAX_BATCH = 65536


class ExportCheckError(AntgoError):
    """The ONNX model's output differs from PyTorch's by more than the tolerance."""


@dataclass
class ExportResult:
    """What :func:`export_onnx` produced."""

    path: Path
    opset: int
    dynamic_batch: bool
    exporter: str  # "dynamo" or "torchscript"
    max_abs_diff: float
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    example: np.ndarray = field(repr=False, default=None)


class PredictModule:
    """Builds a ``torch.nn.Module`` whose ``forward`` is ``model.predict`` (probabilities)."""

    def __new__(cls, model):
        import torch

        class _Predict(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, image):
                predict = getattr(self.inner, "predict", None)
                return predict(image) if callable(predict) else self.inner(image)

        wrapped = _Predict(model).eval()
        # a model may name its output (a detector: "detections") and say how two of its
        # outputs are compared (detections: matched boxes, not row by row)
        wrapped.output_name = str(getattr(model, "OUTPUT_NAME", OUTPUT_NAME))
        wrapped.difference = getattr(model, "output_difference", None)
        wrapped.atol = getattr(model, "EXPORT_ATOL", None)
        return wrapped


@contextlib.contextmanager
def _quiet():
    """Silence the exporters' progress prints and deprecation chatter (they go to stdout)."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export_dynamo(module, example, path: Path, opset: int, dynamic_batch: bool) -> None:
    import torch

    dynamic_shapes = (
        ({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},) if dynamic_batch else None
    )
    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=[module.output_name],
        dynamic_shapes=dynamic_shapes,
        opset_version=opset,
        external_data=False,
        verbose=False,
    )


def _export_torchscript(module, example, path: Path, opset: int, dynamic_batch: bool) -> None:
    import torch

    out = module.output_name
    axes = {INPUT_NAME: {0: "batch"}, out: {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(
        module,
        (example,),
        str(path),
        dynamo=False,
        input_names=[INPUT_NAME],
        output_names=[out],
        dynamic_axes=axes,
        opset_version=opset,
        do_constant_folding=True,
    )


def _write_model_props(path: Path, model) -> None:
    """Record what the loader needs to know of a non-classifier in the file itself: its
    ``task``, ``num_classes`` and ``class_names`` (``antgo.*`` metadata props, JSON values)."""
    import json

    task = getattr(model, "task", None)
    if not isinstance(task, str) or task == "classification":
        return
    import onnx

    props = {"antgo.task": json.dumps(task)}
    count = getattr(model, "num_classes", None)
    if isinstance(count, int):
        props["antgo.num_classes"] = json.dumps(count)
    names = getattr(model, "class_names", None)
    if isinstance(names, (list, tuple)) and names:
        props["antgo.class_names"] = json.dumps([str(n) for n in names])
    proto = onnx.load(str(path))
    for key, value in props.items():  # kept beside what the exporter recorded
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _opset_of(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def check_parity(
    module, path: Path, inputs: list[np.ndarray], atol: float = ATOL
) -> tuple[float, tuple[int, ...]]:
    """Run ``module`` (PyTorch) and the ONNX file (ONNX Runtime) on ``inputs``; return max abs diff.

    The difference is element-wise, or the model's own ``output_difference(expected, got)``
    (with its ``EXPORT_ATOL``) where it has one: a detector's rows are matched by box first.
    """
    import onnxruntime as ort
    import torch

    difference = getattr(module, "difference", None)
    if callable(difference):
        atol = float(getattr(module, "atol", None) or atol)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst, out_shape = 0.0, ()
    for x in inputs:
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).detach().cpu().numpy()
        got = session.run(None, {INPUT_NAME: x})[0]
        if got.shape != expected.shape:
            raise ExportCheckError(
                f"{path}: ONNX Runtime output shape {got.shape} != PyTorch {expected.shape} "
                f"for input {x.shape}"
            )
        if callable(difference):
            diff = float(difference(expected, got))
        else:
            diff = float(np.abs(got.astype(np.float64) - expected).max(initial=0.0))
        worst = max(worst, diff)
        out_shape = expected.shape
    if not np.isfinite(worst) or worst > atol:
        raise ExportCheckError(
            f"{path}: ONNX Runtime differs from PyTorch by {worst:.3g} (> {atol:g}); "
            "try --opset or dynamic_batch=false"
        )
    return worst, out_shape


def export_onnx(
    model,
    path: str | os.PathLike,
    input_shape: tuple[int, ...] | list[int] = (1, 3, 32, 32),
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    atol: float = ATOL,
    example: np.ndarray | None = None,
) -> ExportResult:
    """Export ``model.predict`` to ``path`` and check it with ONNX Runtime.

    Args:
        model: a torch module with ``predict(image)`` (plain ``forward`` is used if absent).
        path: the ``.onnx`` file to write (atomically: a temporary name, then renamed).
        input_shape: (N, C, H, W) of one example input; N is ignored when ``dynamic_batch``.
        opset: ONNX opset version (>= 7).
        dynamic_batch: make the batch axis symbolic.
        atol: the largest allowed |ONNX - PyTorch| difference.
        example: an optional real input batch (float32 NCHW) used for export and the check.

    Returns:
        ExportResult with the exporter used and the measured ``max_abs_diff``.
    """
    import torch

    if len(tuple(input_shape)) != 4 or any(int(d) < 1 for d in input_shape):
        raise UsageError(f"input_shape must be 4 positive sizes (N, C, H, W), got {input_shape}")
    if not 7 <= int(opset) <= 23:
        raise UsageError(f"--opset must be between 7 and 23, got {opset}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = PredictModule(model)
    _, c, h, w = (int(d) for d in input_shape)
    rng = np.random.default_rng(0)
    if example is None:
        example = rng.standard_normal((2 if dynamic_batch else int(input_shape[0]), c, h, w))
    example = np.ascontiguousarray(example, dtype=np.float32)
    # torch.export specialises a size-1 batch, so trace a dynamic export with batch >= 2
    trace = example if example.shape[0] >= 2 or not dynamic_batch else np.repeat(example, 2, 0)
    tmp = path.with_name(f".antgo-tmp-{path.name}")
    errors: list[str] = []
    exporter = ""
    exporters = [("dynamo", _export_dynamo), ("torchscript", _export_torchscript)]
    if int(opset) < 18:  # the dynamo exporter emits opset >= 18 only; down-conversion often fails
        exporters = exporters[1:]
    for name, fn in exporters:
        tmp.unlink(missing_ok=True)
        try:
            with _quiet():
                fn(module, torch.from_numpy(trace), tmp, int(opset), dynamic_batch)
        except Exception as exc:  # an exporter's failure is reported only if both fail
            errors.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            continue
        if _opset_of(tmp) != int(opset):
            errors.append(f"{name}: produced opset {_opset_of(tmp)}, not {opset}")
            continue
        exporter = name
        break
    if not exporter:
        tmp.unlink(missing_ok=True)
        raise ExportCheckError(f"ONNX export to {path} failed: {'; '.join(errors)}")
    _write_model_props(tmp, model)
    checks = [example[:1]]
    if dynamic_batch:
        checks.append(
            np.concatenate([example, rng.standard_normal((3, c, h, w))])[:3].astype(np.float32)
        )
    else:
        checks = [example]
    try:
        diff, out_shape = check_parity(module, tmp, checks, atol)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(
        path,
        int(opset),
        dynamic_batch,
        exporter,
        diff,
        (-1 if dynamic_batch else example.shape[0], c, h, w),
        out_shape,
        example[:1],
    )


def log_onnx_model(
    result: ExportResult,
    name: str = "onnx_model",
    metadata: dict[str, Any] | None = None,
    registered_model_name: str | None = None,
):
    """Log the exported file with ``mlflow.onnx.log_model`` (signature + input example) to the active run."""
    import mlflow
    import onnx
    import onnxruntime
    from mlflow.models import infer_signature

    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    example = np.ascontiguousarray(result.example, dtype=np.float32)
    output = session.run(None, {INPUT_NAME: example})[0]
    signature = infer_signature({INPUT_NAME: example}, output)
    meta = {
        "antgo.exporter": result.exporter,
        "antgo.opset": result.opset,
        "antgo.dynamic_batch": result.dynamic_batch,
        "antgo.max_abs_diff": result.max_abs_diff,
        **(metadata or {}),
    }
    # CUDA first where this onnxruntime has it; naming a missing provider only makes MLflow warn
    providers = [
        p
        for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
        if p in onnxruntime.get_available_providers()
    ]
    return mlflow.onnx.log_model(
        onnx.load(str(result.path)),
        onnx_execution_providers=providers,
        name=name,
        signature=signature,
        input_example={INPUT_NAME: example},
        metadata=meta,
        registered_model_name=registered_model_name,
        # listing the requirements skips MLflow's 5-8 s inference of them
        pip_requirements=[f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"],
    )
