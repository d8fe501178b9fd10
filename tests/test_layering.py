"""Layers import downwards only (DESIGN.md): every import of every module, lazy ones included.

The layers, top to bottom (a module may import its own package, its own layer, and any layer
below; never a layer above):

    cli  >  entrypoints  >  server  >  workflows (project, review, active, hpo, submit, export,
    inference, semi)  >  engine  >  tools  >  models, data  >  core (config, registry, errors, gt,
    fileio, env, progress)

``tools/`` holds pure functions over data and the GT format (extract, package, label merge,
filters): it may use ``data/`` and core, never the engine or a workflow. The scaffold template
(``recipes/``) uses public names only: no ``antgo_mlflow`` module whose name starts with ``_``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "antgo_mlflow"

LAYERS = [
    (
        "core",
        {"config", "registry", "errors", "gt", "fileio", "env", "progress", "credentials", "owner"}
        | {"interrupts", "__init__"},
    ),
    ("models, data", {"models", "data"}),
    ("tools", {"tools"}),
    ("engine", {"engine"}),
    (
        "workflows",
        {"project", "review", "active", "hpo", "submit", "export", "inference", "semi"},
    ),
    ("server", {"server"}),
    ("entrypoints", {"entrypoints"}),
    ("cli", {"cli", "__main__"}),
]
RANK = {part: rank for rank, (_, parts) in enumerate(LAYERS) for part in parts}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import in ``path`` (any scope; relative ones resolved; also
    ``importlib.import_module("literal")``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    inside = ROOT in path.parents
    if not inside:
        package = ""
    elif path.name == "__init__.py":
        package = _module_name(path)
    else:
        package = _module_name(path.parent)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            if base == "antgo_mlflow":  # from antgo_mlflow import cli
                found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def _layer_part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "antgo_mlflow":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _layer_part(_module_name(path))
        if own not in RANK:
            bad.append(f"{path.relative_to(ROOT)}: package {own!r} is in no layer (add it)")
            continue
        for line, module in imports_of(path):
            target = _layer_part(module)
            if target is None or target == own or target not in RANK:
                continue
            if RANK[target] > RANK[own] and LAYERS[RANK[target]][0] != LAYERS[RANK[own]][0]:
                bad.append(
                    f"{path.relative_to(ROOT)}:{line}: {LAYERS[RANK[own]][0]} imports "
                    f"{module} ({LAYERS[RANK[target]][0]})"
                )
    return bad


def test_no_module_imports_a_layer_above_its_own():
    assert upward_imports() == []


def test_the_scaffold_template_imports_no_private_module():
    private = []
    for path in sorted((ROOT / "recipes").rglob("*.py")):
        for line, module in imports_of(path):
            if module.startswith("antgo_mlflow") and any(
                p.startswith("_") and p != "__init__" for p in module.split(".")
            ):
                private.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert private == []


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from antgo_mlflow.engine.runner import Runner\n", "antgo_mlflow.engine.runner"),
        ("from antgo_mlflow import review\n", "antgo_mlflow.review"),
        ("def f():\n    import antgo_mlflow.review.browser\n", "antgo_mlflow.review.browser"),
        ("import importlib\nimportlib.import_module('antgo_mlflow.cli')\n", "antgo_mlflow.cli"),
    ],
)
def test_the_parser_sees_lazy_and_dynamic_imports(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert expected in {m for _, m in imports_of(path)}
