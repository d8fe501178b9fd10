"""The shard commit: SIGKILL at every single step of it leaves the old shard set or the new one."""

from __future__ import annotations

import os
import shutil
import signal

import pytest

from antgo_mlflow.data import commit
from antgo_mlflow.data.datasets import resolve_source
from antgo_mlflow.data.manifest import read_manifest, verify_shards
from antgo_mlflow.data.pack import pack
from tests.data.gtfactory import make_dataset


def _visible(folder):
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _pack_killed_at(step: int, src, tgt, num: int, fmt: str) -> bool:
    """Pack in a forked child that SIGKILLs itself at commit step ``step``; True if it was killed."""
    pid = os.fork()
    if pid == 0:  # the child: count the commit's file-system steps, die at the chosen one
        try:
            calls = [0]
            real = commit._do

            def dying(op, *args):
                calls[0] += 1
                if calls[0] == step:
                    os.kill(os.getpid(), signal.SIGKILL)
                real(op, *args)

            commit._do = dying
            pack(str(src), tgt, "t", num=num, workers=1, fmt=fmt)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status)


@pytest.mark.parametrize("fmt, num_new", [("tfrecord", 2), ("tfrecord", 3), ("kv", 2)])
def test_shard_commit_is_old_or_new_under_kill(tmp_path, fmt, num_new):
    old_src = make_dataset(tmp_path / "old", n=6)
    new_src = make_dataset(tmp_path / "new", n=6, rich=True)
    # the two reference states: old set (3 shards) and new set (same names when num_new == 2)
    pack(str(old_src), tmp_path / "old_set", "t", num=2, fmt=fmt)
    pack(str(new_src), tmp_path / "new_set", "t", num=num_new, fmt=fmt)
    old_digest = read_manifest(tmp_path / "old_set" / "t").get("digest")
    new_digest = read_manifest(tmp_path / "new_set" / "t").get("digest")
    states = {"old": _visible(tmp_path / "old_set"), "new": _visible(tmp_path / "new_set")}

    seen = set()
    for step in range(1, 60):
        tgt = tmp_path / f"tgt{step}"
        shutil.copytree(tmp_path / "old_set", tgt)
        killed = _pack_killed_at(step, new_src, tgt, num_new, fmt)
        # what any reader sees afterwards: a complete, verified old set or new set
        source = resolve_source(str(tgt), fmt)
        manifest = verify_shards(tgt / "t")
        state = {old_digest: "old", new_digest: "new"}[manifest["digest"]]
        assert _visible(tgt) == states[state], (step, _visible(tgt))
        assert [p.name for p in source.files] == [s["file"] for s in manifest["shards"]]
        seen.add(state)
        if not killed:  # the child got past the last step: every step has been tried
            break
    assert seen == {"old", "new"} and step > 8


def test_next_pack_finishes_an_interrupted_commit(tmp_path):
    src = make_dataset(tmp_path / "ds", n=4)
    pack(str(src), tmp_path / "out", "t", num=2)
    assert _pack_killed_at(3, make_dataset(tmp_path / "b", n=5), tmp_path / "out", 2, "tfrecord")
    assert (tmp_path / "out" / ".antgo-tmp-pack-t" / "commit.json").is_file()
    assert not (tmp_path / "out" / "t-manifest.json").exists()  # mid-commit
    summary = pack(str(src), tmp_path / "out", "t", num=2)  # finishes it, then packs again
    assert summary.total == 4
    assert _visible(tmp_path / "out") == [
        "t-00000-of-00002-index",
        "t-00000-of-00002-tfrecord",
        "t-00001-of-00002-index",
        "t-00001-of-00002-tfrecord",
        "t-manifest.json",
    ]
    assert not any(p.name.startswith(".antgo-tmp-pack-t") for p in (tmp_path / "out").iterdir())
