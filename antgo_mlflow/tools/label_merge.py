"""Merge several GT files: same image (by resolved ``image_file``) -> one sample with all instances.

* Instances are unioned: an instance equal to one already there (same box and label) is merged
  into it (fields it lacks are filled in), others are appended; per-instance fields stay aligned.
* Conflicts (same image, different ``image_label``, or different ``width``/``height``) keep the
  first file's value and are reported (returned, and written to ``merge_conflicts.json``).
* ``meta.json`` category lists are merged: the first file's order, then new names appended.
  Files whose lists give one index two different names are refused unless ``remap`` is set,
  which re-indexes every label to the merged list by class name.
* ``image_file`` is rewritten relative to ``tgt`` so the merged GT finds its images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from antgo_mlflow.errors import DataError, UsageError
from antgo_mlflow.fileio import atomic_write_json
from antgo_mlflow.gt import load_gt, read_meta, save_gt, write_meta
from antgo_mlflow.gt.meta import default_meta

INSTANCE_FIELDS = ("bboxes", "labels", "box_visibility", "joints2d", "joints_vis", "segments")
_PAD = {"labels": -1, "box_visibility": 1, "joints2d": [], "joints_vis": [], "segments": []}


def merge_categories(metas: list[tuple[str, list[str]]], remap: bool) -> list[str]:
    """Merged class list; raises DataError when one index means two names (unless ``remap``)."""
    merged: list[str] = []
    owner: dict[int, str] = {}
    for path, cats in metas:
        for i, name in enumerate(cats):
            if i < len(merged) and merged[i] != name and not remap:
                raise DataError(
                    f"{path}: class index {i} is {name!r} but {merged[i]!r} in {owner[i]} "
                    "(conflicting meta.json categories; pass --remap to re-index by name)"
                )
            if name not in merged:
                if not remap and i != len(merged):
                    raise DataError(
                        f"{path}: class {name!r} has index {i}, already used in {owner.get(i)}"
                    )
                owner[len(merged)] = path
                merged.append(name)
    return merged


def _instances(sample: dict) -> list[dict]:
    n = len(sample.get("bboxes") or [])
    out = []
    for i in range(n):
        inst = {"bboxes": sample["bboxes"][i]}
        for f in INSTANCE_FIELDS[1:]:
            values = sample.get(f) or []
            if i < len(values):
                inst[f] = values[i]
        out.append(inst)
    return out


def _same(a: dict, b: dict) -> bool:
    return list(map(float, a["bboxes"])) == list(map(float, b["bboxes"])) and a.get(
        "labels", -1
    ) == b.get("labels", -1)


def _set_instances(sample: dict, insts: list[dict]) -> None:
    sample["bboxes"] = [i["bboxes"] for i in insts]
    for f in INSTANCE_FIELDS[1:]:
        if any(f in i and i[f] not in ([], None) for i in insts) or (f == "labels" and insts):
            sample[f] = [i.get(f, _PAD[f]) for i in insts]
        elif f in sample:
            sample[f] = []


def merge_gt(
    srcs: list[str | os.PathLike], tgt: str | os.PathLike, remap: bool = False
) -> dict[str, Any]:
    """Merge GT files into ``<tgt>/annotation.json`` + ``meta.json``; returns a summary."""
    if len(srcs) < 2:
        raise UsageError("--src: give at least two GT files separated by ','")
    tgt = Path(tgt)
    if tgt.exists() and not tgt.is_dir():
        raise UsageError(f"--tgt {tgt}: must be a folder")
    loaded = []
    for src in srcs:
        path = Path(src)
        samples = load_gt(path, inside=False)  # JSON only: images stay where they are
        meta = read_meta(path.parent if path.is_file() else path)
        cats = list(((meta or {}).get("meta") or {}).get("category") or [])
        loaded.append((path, samples, meta, cats))
    classes = merge_categories([(str(p), c) for p, _, _, c in loaded if c], remap)
    merged: dict[str, dict] = {}
    conflicts: list[dict] = []
    base_meta = next((m for _, _, m, _ in loaded if m), None) or default_meta()
    for path, samples, _, cats in loaded:
        folder = path.parent if path.is_file() else path
        to_new = {i: classes.index(n) for i, n in enumerate(cats)} if cats else {}
        for k, sample in enumerate(samples):
            sample = dict(sample)
            if cats:
                sample["labels"] = [to_new.get(v, v) for v in sample.get("labels") or []]
                if sample.get("image_label", -1) >= 0:
                    sample["image_label"] = to_new.get(sample["image_label"], sample["image_label"])
            if sample.get("image_file"):
                real = (folder / sample["image_file"]).resolve()
                key = str(real)
                sample["image_file"] = os.path.relpath(real, tgt.resolve())
            else:
                key = sample.get("image_url", "")
            if key not in merged:
                merged[key] = sample
                continue
            _merge_into(merged[key], sample, f"{path}: sample {k}", conflicts)
    out_samples = list(merged.values())
    with_tgt = tgt / "annotation.json"
    save_gt(with_tgt, out_samples)
    meta = dict(base_meta)
    meta["extent"] = {"total": len(out_samples)}
    meta["meta"] = dict(meta.get("meta") or {})
    meta["meta"]["category"] = classes
    write_meta(tgt, meta)
    if conflicts:
        atomic_write_json(tgt / "merge_conflicts.json", conflicts, indent=1)
    # Images stay in their source folders: packing the merged GT needs them allowed (--data-root).
    folders = {(p.parent if p.is_file() else p).resolve() for p, _, _, _ in loaded}
    outside = sorted(str(f) for f in folders if not f.is_relative_to(tgt.resolve()))
    return {
        "gt": str(with_tgt),
        "samples": len(out_samples),
        "conflicts": conflicts,
        "image_roots": outside,
    }


def _merge_into(first: dict, other: dict, where: str, conflicts: list[dict]) -> None:
    for field in ("image_label", "width", "height"):
        a, b = first.get(field), other.get(field)
        empty = (None, -1) if field == "image_label" else (None, 0)
        if a in empty and b not in empty:
            first[field] = b
            if field == "image_label":
                first["image_label_name"] = other.get("image_label_name", "")
        elif a not in empty and b not in empty and a != b:
            conflicts.append(
                {
                    "image_file": first.get("image_file"),
                    "field": field,
                    "kept": a,
                    "other": b,
                    "where": where,
                }
            )
    insts = _instances(first)
    for inst in _instances(other):
        same = next((i for i in insts if _same(i, inst)), None)
        if same is None:
            insts.append(inst)
        else:
            for f, v in inst.items():
                if same.get(f) in (None, []):
                    same[f] = v
    _set_instances(first, insts)
    if other.get("tags") or first.get("tags"):
        first["tags"] = sorted(set(first.get("tags") or []) | set(other.get("tags") or []))
    preds = dict(other.get("predictions") or {})
    preds.update(first.get("predictions") or {})
    first["predictions"] = preds
    for k, v in other.items():
        first.setdefault(k, v)
