"""The project snapshot: which files ship, secrets never do, the digest follows the code."""

from __future__ import annotations

import io
import subprocess
import tarfile

import pytest

from antgo_mlflow.errors import DataError
from antgo_mlflow.submit.snapshot import take_snapshot
from tests.submit.conftest import make_tiny_project


def test_git_project_ships_tracked_and_unignored_files_but_no_secrets(tmp_path):
    root = make_tiny_project(tmp_path / "p")
    (root / ".gitignore").write_text("output/\n")
    (root / "output").mkdir()
    (root / "output" / "big.pth").write_bytes(b"x" * 10)
    (root / "creds").mkdir()
    (root / "creds" / "id_ed25519").write_text("k")
    (root / "notes.txt").write_text("-----BEGIN RSA PRIVATE KEY-----\nabc\n")  # a key by content
    snap = take_snapshot(root)
    assert snap.files == [".gitignore", "MLproject", "job.py", "sleeper.py", "tinypkg/__init__.py"]
    assert sorted(snap.excluded) == [".env", "creds/id_ed25519", "deploy_key.pem", "notes.txt"]
    names = tarfile.open(fileobj=io.BytesIO(snap.tar_bytes()), mode="r:gz").getnames()
    assert "tinypkg" in names and ".env" not in names


def test_a_folder_outside_git_skips_caches_and_virtualenvs(tmp_path):
    root = make_tiny_project(tmp_path / "p", git=False)
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "x.py").write_text("")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "job.cpython-311.pyc").write_bytes(b"")
    snap = take_snapshot(root)
    assert snap.files == ["MLproject", "job.py", "sleeper.py", "tinypkg/__init__.py"]


def test_digest_follows_content_and_executable_bit_only(tmp_path):
    a = make_tiny_project(tmp_path / "a", git=False)
    b = make_tiny_project(tmp_path / "b", git=False)
    assert take_snapshot(a).digest == take_snapshot(b).digest  # same code, other folder
    (b / ".env").write_text("OTHER=secret\n")
    assert take_snapshot(a).digest == take_snapshot(b).digest  # secrets are not part of it
    (b / "job.py").chmod(0o755)
    assert take_snapshot(a).digest != take_snapshot(b).digest
    (b / "job.py").chmod(0o644)
    (b / "job.py").write_text((b / "job.py").read_text() + "\n# changed\n")
    assert take_snapshot(a).digest != take_snapshot(b).digest


def test_tar_prefix_has_folder_entries(tmp_path):
    root = make_tiny_project(tmp_path / "p", git=False)
    tar = tarfile.open(fileobj=io.BytesIO(take_snapshot(root).tar_bytes("/workspace/code")))
    dirs = [m.name for m in tar.getmembers() if m.isdir()]
    assert dirs[:2] == ["workspace", "workspace/code"] and "workspace/code/tinypkg" in dirs


def test_nothing_to_ship_is_an_error(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    (root / ".env").write_text("A=1\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    with pytest.raises(DataError, match="nothing to submit"):
        take_snapshot(root)
