"""The project snapshot a submitter ships: which files, their digest, and the .tar.gz of them.

Files: in a git work tree, the tracked files plus the untracked ones git does not ignore
(``git ls-files --cached --others --exclude-standard``); elsewhere every file except caches and
virtualenvs (``SKIP_DIRS``). Secrets are never shipped, whatever git says: ``.env`` files, key
and certificate files, credential files, and any file that starts like a PEM private key.
The digest (``sha256:<hex>``) covers each file's path, executable bit and content, so the same
code gives the same digest on any machine; runs record it as tag ``antgo.submit.code_digest``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from antgo_mlflow.errors import DataError

#: Names never shipped (matched against the file name, case-insensitively).
SECRET_PATTERNS = (
    ".env",
    ".env.*",
    "*.env",
    ".netrc",
    ".pypirc",
    ".git-credentials",
    ".npmrc",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*.ppk",
    "known_hosts",
    "authorized_keys",
)
#: Folders skipped outside git (inside git, .gitignore decides; these are skipped as well).
SKIP_DIRS = {
    ".git",
    "__pycache__",
    ".venv",
    "venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".ipynb_checkpoints",
    "node_modules",
    "mlruns",
}
_PRIVATE_KEY_MARK = b"PRIVATE KEY"


@dataclass
class Snapshot:
    """The files of a project, their digest, and what was left out as secret."""

    root: Path
    files: list[str]  # posix paths relative to root, sorted
    digest: str
    size: int
    excluded: list[str] = field(default_factory=list)

    def write_tar(self, fileobj, prefix: str = "") -> None:
        """Write the files as a .tar.gz into ``fileobj`` (member names under ``prefix``)."""
        prefix = prefix.strip("/")
        names = [f"{prefix}/{rel}".lstrip("/") for rel in self.files]
        # explicit folder entries: an engine's put_archive does not invent missing parents
        folders = sorted({str(p) for name in names for p in Path(name).parents if str(p) != "."})
        with tarfile.open(fileobj=fileobj, mode="w:gz", compresslevel=1) as tar:
            for folder in folders:
                info = tarfile.TarInfo(name=folder)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            for rel, name in zip(self.files, names):
                path = self.root / rel
                info = tarfile.TarInfo(name=name)
                st = path.stat()
                info.size = st.st_size
                info.mtime = int(st.st_mtime)
                info.mode = 0o755 if st.st_mode & 0o111 else 0o644
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)

    def tar_bytes(self, prefix: str = "") -> bytes:
        """The .tar.gz in memory (fine for the code of a project; data belongs in shards)."""
        buf = io.BytesIO()
        self.write_tar(buf, prefix)
        return buf.getvalue()

    def tar_file(self, prefix: str = "") -> Path:
        """The .tar.gz written to a private temporary file; the caller deletes it."""
        fd, name = tempfile.mkstemp(prefix="antgo-snapshot-", suffix=".tar.gz")
        with os.fdopen(fd, "wb") as fh:
            self.write_tar(fh, prefix)
        return Path(name)

    def describe(self) -> str:
        """One line for the terminal: file count, size, digest, secrets left out."""
        text = f"{len(self.files)} files, {self.size / 1e6:.1f} MB, {self.digest[:19]}"
        if self.excluded:
            text += f" (left out as secret: {', '.join(self.excluded[:5])}"
            text += f" and {len(self.excluded) - 5} more)" if len(self.excluded) > 5 else ")"
        return text


def is_secret(rel: str, head: bytes = b"") -> bool:
    """True for paths that must never leave the machine (by name, or a PEM private key inside)."""
    name = Path(rel).name.lower()
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in SECRET_PATTERNS):
        return True
    return head.startswith(b"-----BEGIN") and _PRIVATE_KEY_MARK in head[:100]


def _git_files(root: Path) -> list[str] | None:
    try:
        proc = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None  # not a git work tree (or no git): walk the folder instead
    return [p for p in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if p]


def _walk_files(root: Path) -> list[str]:
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in names:
            if name.endswith((".pyc", ".pyo")) or name == "mlflow.db":
                continue
            out.append(Path(folder, name).relative_to(root).as_posix())
    return out


def take_snapshot(root: str | os.PathLike, exclude: list[str | os.PathLike] = ()) -> Snapshot:
    """List, filter and digest the project files under ``root`` (``exclude``: extra paths to skip)."""
    root = Path(root).absolute()
    if not root.is_dir():
        raise DataError(f"{root}: project folder not found")
    listed = _git_files(root)
    if listed is None:
        listed = _walk_files(root)
    skip = {Path(p).expanduser().absolute() for p in exclude}
    files, excluded, size = [], [], 0
    digest = hashlib.sha256()
    for rel in sorted(set(listed)):
        if any(part in SKIP_DIRS for part in Path(rel).parts[:-1]):
            continue
        path = root / rel
        # regular files only (a deleted tracked file, a submodule or a dangling link is skipped);
        # a link is followed only when it stays inside the project
        if not path.is_file() or (path.is_symlink() and root not in path.resolve().parents):
            continue
        if path.absolute() in skip:
            excluded.append(rel)
            continue
        with open(path, "rb") as fh:
            content = fh.read()
        if is_secret(rel, content[:100]):
            excluded.append(rel)
            continue
        executable = "x" if os.stat(path).st_mode & 0o111 else "-"
        digest.update(f"{rel}\0{executable}\0".encode("utf-8", "surrogateescape"))
        digest.update(hashlib.sha256(content).digest())
        files.append(rel)
        size += len(content)
    if not files:
        raise DataError(f"{root}: nothing to submit (no files after leaving out secrets)")
    return Snapshot(root, files, "sha256:" + digest.hexdigest(), size, excluded)
