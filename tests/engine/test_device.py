"""`--gpu-id` on a machine that lacks the GPUs it names: the CPU (or the GPUs there are), one warning.

The CPU cases are real on this machine (no CUDA); the "one GPU of two" case fakes
``torch.cuda.is_available``/``device_count`` because no GPU can run here.
"""

from __future__ import annotations

import pytest
import torch

from antgo_mlflow.engine import device as device_mod
from antgo_mlflow.engine.device import choose_device, resolve_device


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("gpu_id", ["0", "0,1", 0])
def test_a_gpu_id_without_cuda_falls_back_to_the_cpu_with_a_reason(no_cuda, gpu_id):
    device, note = choose_device(gpu_id)
    assert device == torch.device("cpu")
    assert note.startswith(f"--gpu-id={gpu_id}: CUDA is not available") and "CPU" in note


def test_the_cpu_asked_for_is_no_fallback(no_cuda):
    assert choose_device("-1") == (torch.device("cpu"), None)
    assert choose_device(None) == (torch.device("cpu"), None)


def test_two_gpus_asked_one_there_trains_on_it_and_says_so(monkeypatch):
    """Faked: one visible GPU (no GPU on the test machine)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    device, note = choose_device("0,1")
    assert device == torch.device("cuda", 0)
    assert note == "--gpu-id=0,1: only 1 GPU(s) visible; training on 0"
    assert choose_device("0") == (torch.device("cuda", 0), None)


def test_the_warning_is_one_line_once_per_process(no_cuda, monkeypatch, capsys):
    monkeypatch.setattr(device_mod, "_warned", set())
    assert resolve_device("0") == torch.device("cpu")
    assert resolve_device("0") == torch.device("cpu")
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "antgo: warning: --gpu-id=0: CUDA is not available on this machine; training on the CPU"
    ]
