"""Atomic writes: old content kept on failure, no temporaries left, normal file permissions."""

import os
import stat

import pytest

from antgo_mlflow.fileio import StagingDir, atomic_open, atomic_write_text


def test_failed_write_keeps_old_content_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as fh:
        fh.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_written_files_get_umask_permissions_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "b.txt").st_mode) == 0o644


def test_staging_dir_commits_or_vanishes(tmp_path):
    target = tmp_path / "out"
    with StagingDir(target) as stage:
        (stage.path / "sub").mkdir()
        (stage.path / "sub" / "x.txt").write_text("1")
        (stage.path / "index.json").write_text("[]")
        stage.commit(last=["index.json"])
    assert sorted(p.name for p in target.rglob("*")) == ["index.json", "sub", "x.txt"]
    with pytest.raises(KeyError), StagingDir(tmp_path / "new") as stage:
        (stage.path / "y.txt").write_text("1")
        raise KeyError("interrupted")
    assert not (tmp_path / "new").exists()


def test_stale_temporaries_are_removed_by_the_next_run_into_the_target(tmp_path):
    """Leftovers of killed runs (dead owner, or old and unknowable) go; a live run's stay."""
    import json
    import subprocess
    import sys
    import time

    from antgo_mlflow.fileio import OWNER_FILE
    from antgo_mlflow.owner import current_owner

    target = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    folders = {}
    for name, owner in (
        ("dead", {**current_owner(), "pid": dead.stdout.strip(), "start": "1"}),
        ("live", current_owner()),
        ("elsewhere", {**current_owner(), "host": "another-host"}),
        ("old", None),
        ("fresh", None),
    ):
        folders[name] = target / f".antgo-tmp-{name}"
        folders[name].mkdir(parents=True)
        if owner is not None:
            (folders[name] / OWNER_FILE).write_text(json.dumps(owner))
    two_days_ago = time.time() - 2 * 86400
    os.utime(folders["old"], (two_days_ago, two_days_ago))
    (target / ".antgo-tmp-a.json.x1").write_text("half")
    os.utime(target / ".antgo-tmp-a.json.x1", (two_days_ago, two_days_ago))

    with StagingDir(target) as stage:
        (stage.path / "x.txt").write_text("1")
        stage.commit()
    left = sorted(p.name for p in target.iterdir())
    assert left == [".antgo-tmp-elsewhere", ".antgo-tmp-fresh", ".antgo-tmp-live", "x.txt"]
