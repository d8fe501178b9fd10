"""Scaffold an experiment from a recipe template (``antgo create mvp``; reused by ``create exp``).

A template is a folder under ``recipes/`` (installed as ``antgo_mlflow.recipes``): its top-level
files (``MLproject``, ``README.md``, ``launch.sh``, ...) go to ``tgt``, and its code folder (named
like the recipe, ``cifar10/``) goes to ``tgt/<name>/``. ``{{name}}`` in text files becomes the
experiment name. Everything is written to a staging folder and moved into place at the end, so
an error leaves ``tgt`` as it was.

Example:
    >>> create_mvp("mycls", tgt="./work")   # ./work/mycls/main.py, ./work/MLproject, ...
    >>> create_mvp("mydet", tgt="./work", task="detection")
"""

from __future__ import annotations

import keyword
import os
import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from antgo_mlflow.errors import UsageError

PLACEHOLDER = "{{name}}"
TEXT_SUFFIXES = {".py", ".md", ".sh", ".txt", ".yaml", ".yml", ".cfg", ".toml", ".json", ""}
_SKIP = {"__pycache__", ".DS_Store"}
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def recipes_root() -> Traversable:
    """The installed recipe templates (``recipes/`` of the repository)."""
    return files("antgo_mlflow.recipes")


def list_recipes() -> list[str]:
    """Template names (folders under ``recipes/`` that hold an ``MLproject``)."""
    return sorted(
        p.name for p in recipes_root().iterdir() if p.is_dir() and (p / "MLproject").is_file()
    )


def _walk(node: Traversable, rel: Path):
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name in _SKIP or child.name.endswith(".pyc"):
            continue
        if child.is_dir():
            yield from _walk(child, rel / child.name)
        else:
            yield child, rel / child.name


#: ``--task`` -> files of other recipes that replace the template's (source under ``recipes/``
#: -> path in the scaffold, ``{name}`` = the experiment name): the detection scaffold trains the
#: shapes recipe's config, so the repository's default detector and the scaffold's are one file.
TASKS: dict[str, dict[str, str]] = {
    "classification": {},
    "detection": {"shapes/config.py": "{name}/configs/config.py", "shapes/README.md": "README.md"},
}


def _files(folder: Traversable, code_dir: str, name: str) -> list[tuple[Traversable, Path]]:
    out = []
    for src, rel in _walk(folder, Path()):
        parts = rel.parts
        if parts[0] == code_dir and len(parts) > 1:  # the code folder is renamed to the exp name
            rel = Path(name, *parts[1:])
        out.append((src, rel))
    return out


def plan(
    name: str, recipe: str = "cifar10", task: str = "classification"
) -> list[tuple[Traversable, Path]]:
    """(template file, path relative to tgt) pairs the scaffold writes."""
    template = recipes_root() / recipe
    if not (template.is_dir() and (template / "MLproject").is_file()):
        choices = ", ".join(list_recipes()) or "none installed"
        raise UsageError(f"--recipe {recipe!r}: no such template (available: {choices})")
    if task not in TASKS:
        raise UsageError(f"--task={task}: expected one of {', '.join(TASKS)}")
    files = {rel: src for src, rel in _files(template, recipe, name)}
    for source, target in TASKS[task].items():
        src = recipes_root().joinpath(*source.split("/"))
        files[Path(target.format(name=name))] = src
    return [(src, rel) for rel, src in sorted(files.items())]


def check_name(name: str) -> None:
    """The experiment name is also a Python package name (``import <name>``)."""
    if not _NAME_RE.match(name or "") or keyword.iskeyword(name):
        raise UsageError(
            f"--name {name!r}: must be a Python identifier (letters, digits, _; not starting with a digit)"
        )


def create_mvp(
    name: str = "cifar10",
    tgt: str | os.PathLike = ".",
    force: bool = False,
    recipe: str = "cifar10",
    task: str = "classification",
) -> Path:
    """Write the ``recipe`` template as experiment ``name`` into ``tgt``; return ``tgt/<name>``.

    ``task='detection'`` swaps in the shapes recipe's config (an FCOS on the embedded shapes) and
    its README (``TASKS``); the layout, ``main.py`` and the MLproject stay the same.

    Raises UsageError (one line) if ``tgt/<name>`` or a top-level file exists, unless ``force``.
    """
    from antgo_mlflow.fileio import StagingDir

    check_name(name)
    tgt = Path(tgt).expanduser()
    if tgt.exists() and not tgt.is_dir():
        raise UsageError(f"--tgt {tgt}: not a folder")
    files_to_write = plan(name, recipe, task)
    if not force:
        if (tgt / name).exists():
            raise UsageError(f"{tgt / name} already exists; pass --force to overwrite it")
        for _, rel in files_to_write:
            if (tgt / rel).exists():
                raise UsageError(f"{tgt / rel} already exists; pass --force to overwrite it")
    with StagingDir(tgt) as stage:
        for src, rel in files_to_write:
            data = src.read_bytes()
            if Path(rel).suffix in TEXT_SUFFIXES:
                try:
                    data = data.decode("utf-8").replace(PLACEHOLDER, name).encode("utf-8")
                except UnicodeDecodeError:
                    pass  # binary file without a suffix: copied as is
            out = stage.path / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            if rel.suffix == ".sh":
                out.chmod(0o755)
        stage.commit()
    return tgt / name
