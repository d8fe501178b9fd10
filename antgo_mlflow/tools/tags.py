"""``--tags`` class mappings: the one rule every command (extract/coco, label/studio, label/start) uses.

``name:index,name:index,...`` maps class names to indices; ``name,name,...`` numbers them 0, 1, ...
in order (mixing the two forms is refused). Each name appears once; an index is an integer >= 0;
several names may share an index (they are merged into one class, named by the first of them).
"""

from __future__ import annotations

from antgo_mlflow.errors import UsageError

#: The rule in one line, for ``--help`` texts.
TAGS_HELP = (
    "name:index pairs (e.g. Car:0,Train:1; names sharing an index merge) or names numbered in order"
)


def parse_tags(tags: str | dict[str, int] | None) -> dict[str, int] | None:
    """``"person:0,car:1"`` -> ``{"person": 0, "car": 1}``; ``"person,car"`` numbers them in order.

    None (or an empty string or dict) gives None. A dict is checked by the same rule.
    """
    if tags is None or tags == "" or tags == {}:
        return None
    if isinstance(tags, dict):
        items = list(tags.items())
    else:
        parts = [p.strip() for p in tags.split(",") if p.strip()]
        with_idx = [":" in p for p in parts]
        if any(with_idx) and not all(with_idx):
            raise UsageError(f"--tags={tags}: give every name an index (name:index) or none")
        items = []
        for i, part in enumerate(parts):
            name, _, idx = part.rpartition(":") if ":" in part else (part, "", str(i))
            try:
                items.append((name.strip(), int(idx)))
            except ValueError:
                raise UsageError(
                    f"--tags={tags}: '{part}' is not name:index (index must be an integer)"
                ) from None
    mapping: dict[str, int] = {}
    for name, idx in items:
        if not name:
            raise UsageError(f"--tags={tags}: empty category name")
        if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
            raise UsageError(f"--tags={tags}: index of '{name}' must be an integer >= 0")
        if name in mapping:
            raise UsageError(f"--tags={tags}: '{name}' is given twice")
        mapping[name] = idx
    return mapping


def class_names(mapping: dict[str, int]) -> list[str]:
    """Index -> name list of a mapping (the first name of a shared index; gaps named by number)."""
    out = [str(i) for i in range(max(mapping.values(), default=-1) + 1)]
    taken: set[int] = set()
    for name, idx in mapping.items():
        if idx not in taken:
            out[idx] = name
            taken.add(idx)
    return out
