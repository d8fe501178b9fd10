"""Entry-point plumbing: output paths are checked before any work, errors are one line."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module, make_bad",
    [
        ("export", lambda tmp: ["--checkpoint", str(tmp / "none.pth"), "--output", str(tmp)]),
        ("pseudo_label", lambda tmp: ["--models", "m.onnx", "--input", str(tmp),
                                      "--output", str(tmp / "afile")]),
    ],
)  # fmt: skip
def test_a_bad_output_path_is_refused_before_any_work(tmp_path, module, make_bad):
    """export --output naming a folder (and pseudo-label --output naming a file) fails at once,
    in one line, instead of after the whole export."""
    (tmp_path / "afile").write_text("x")
    proc = subprocess.run(
        [sys.executable, "-m", f"antgo_mlflow.entrypoints.{module}", *make_bad(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "--output" in lines[0] and ("is a folder" in lines[0] or "is a file" in lines[0])
