"""InteractContext.browser on the same FiftyOne code as browser/images (real App, real database)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request

import numpy as np
import pytest

from antgo_mlflow.errors import DataError, UsageError
from tests.conftest import free_port


def test_browser_record_waiting_download_exit(tmp_path):
    from antgo_mlflow.review import InteractContext

    lines: list[str] = []
    ctx = InteractContext(dump_dir=tmp_path / "dump", echo=lines.append)
    port = free_port()
    ctx.browser.start("b_exp", config={"tags": ["hello", "world"]}, port=port)
    try:
        for i in range(3):
            ctx.recorder.record(
                {
                    "id": i,
                    "score": {"data": np.full((16, 24), 40 * i, dtype=np.uint8), "type": "IMAGE"},
                    "description": {"data": f"hello the world {i}", "type": "STRING"},
                }
            )
        with pytest.raises(DataError, match="IMAGE or STRING"):
            ctx.recorder.record({"id": 9, "x": {"data": 1, "type": "VIDEO"}})
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as resp:
            assert resp.status == 200
        assert any(f"http://127.0.0.1:{port}/" in line for line in lines)
        ds = ctx.browser.dataset
        assert len(ds) == 3 and ds.first().description == "hello the world 0"
        assert (ds.first().metadata.width, ds.first().metadata.height) == (24, 16)

        def annotator():  # a reviewer tagging in the App writes the same sample tags
            time.sleep(2)
            for k, s in enumerate(ds):
                s.tags = ["hello" if k % 2 == 0 else "world"]
                s.save()

        worker = threading.Thread(target=annotator)
        t0 = time.monotonic()
        worker.start()
        assert ctx.browser.waiting(timeout=120) is True
        assert time.monotonic() - t0 >= 2  # it waited for the tags
        worker.join()
        import mlflow

        with mlflow.start_run() as run:  # download() logs the record to the active run
            content = ctx.browser.download()
        artifacts = [
            a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "review")
        ]
        assert artifacts == ["review/check.json"]
        assert content["complete"] is True
        assert [s["tags"] for s in content["samples"]] == [["hello"], ["world"], ["hello"]]
        assert (tmp_path / "dump" / "b_exp" / "check.json").exists()
    finally:
        ctx.browser.exit()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # the App server is gone
    ds.delete()


def test_browser_start_needs_tags_and_record_needs_a_service(tmp_path):
    from antgo_mlflow.review import InteractContext

    ctx = InteractContext(dump_dir=tmp_path)
    with pytest.raises(UsageError, match="start ctx.browser"):
        ctx.recorder.record({"id": 0})
    with pytest.raises(UsageError, match="tags"):
        ctx.browser.start("x", config={})
