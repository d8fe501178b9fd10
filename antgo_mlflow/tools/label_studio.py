"""Label Studio JSON export <-> standard GT (rectangles, keypoints, polygons, choices).

Label Studio stores coordinates in percent of the image (``original_width/height`` give the
pixels). Reading (``--from``):

* ``rectanglelabels``/``rectangle`` -> one instance (``bboxes``, ``labels``). A rotated rectangle
  is refused unless ``allow_rotation`` is set; then its axis-aligned enclosing box is stored.
* ``polygonlabels``/``polygon`` -> ``segments`` ([[x, y], ...] pixels). A polygon whose
  ``parentID`` names a rectangle belongs to that instance (several such polygons become COCO
  style parts); otherwise it is a new instance whose box encloses it.
* ``keypointlabels``/``keypoint`` -> ``joints2d``/``joints_vis``, grouped by ``parentID`` (a
  rectangle, or a root keypoint as antgo did); keypoints with no group form one instance. The
  joint position is the label's index in the tag map; joints not marked get [0, 0] and vis 0.
* ``choices`` -> ``image_label_name`` (several choices joined by ",") and ``image_label``; a
  per-region ``choices`` result of control ``crowd`` (the region's id, value ``["crowd"]``)
  marks that instance as a crowd (``iscrowd`` 1, ``box_visibility`` 0, as extract/coco writes).
* ``relation`` results are ignored; any other type is refused, naming the task and the type.

Class indices come from ``tags`` ("Car:0,Train:1"); without it names are numbered in order of
first appearance. The first annotation of each task that was not cancelled is used; tasks
without one are skipped and counted. Writing (``--to``) is the inverse; a GT made by ``--from``
comes back unchanged through ``--to`` then ``--from`` (coordinates rounded to 6 decimals).
Not representable in Label Studio: COCO RLE masks (crowd regions of real COCO sets: ``--to``
exports their box and drops the mask, counting it in the summary), keypoint visibility other
than 0/1 (comes back as 1), coordinates of invisible keypoints (come back as [0, 0]).
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any

from antgo_mlflow.errors import DataError, UsageError
from antgo_mlflow.fileio import read_json
from antgo_mlflow.gt import load_gt, new_sample, read_meta, save_gt, write_meta
from antgo_mlflow.gt.meta import default_meta
from antgo_mlflow.tools.tags import class_names, parse_tags

RECT = ("rectanglelabels", "rectangle")
POLY = ("polygonlabels", "polygon")
KEYP = ("keypointlabels", "keypoint")
KNOWN = (*RECT, *POLY, *KEYP, "choices", "relation")
_UPLOAD_HASH = re.compile(r"^[0-9a-f]{8}-")
#: The per-region choice that carries COCO's crowd flag through Label Studio.
CROWD = "crowd"


def _num(v: float) -> float | int:
    r = round(float(v), 6)
    return int(r) if r.is_integer() else r


def _image_ref(task: dict, to_name: str | None, prefix: str) -> tuple[str, str]:
    """(image_file, image_url) of a task from its ``data`` (upload, local-files, URL or path)."""
    data = task.get("data") or {}
    value = data.get(to_name) if to_name else None
    if not isinstance(value, str):
        value = data.get("image")
    if not isinstance(value, str):
        value = next((v for v in data.values() if isinstance(v, str)), None)
    if not isinstance(value, str):
        value = task.get("file_upload")
    if not isinstance(value, str) or not value:
        raise DataError(f"task {task.get('id')}: no image reference in 'data'")
    join = (lambda p: f"{prefix.rstrip('/')}/{p}") if prefix else (lambda p: p)
    if value.startswith(("http://", "https://")):
        name = Path(urllib.parse.urlparse(value).path).name
        return (join(name) if prefix else ""), value
    if value.startswith("/data/local-files/"):
        query = urllib.parse.parse_qs(urllib.parse.urlparse(value).query)
        return join(query.get("d", [""])[0]), ""
    if value.startswith("/data/upload/") or task.get("file_upload") == value:
        return join(_UPLOAD_HASH.sub("", Path(value).name)), ""
    return join(value), ""


def _check_pct(value: float, what: str, where: str) -> float:
    if (
        not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not -1e-6 <= value <= 100 + 1e-6
    ):
        raise DataError(f"{where}: {what}={value!r} is not a percentage in [0, 100]")
    return float(value)


def _label_of(value: dict, rtype: str) -> str | None:
    names = value.get(rtype) if rtype.endswith("labels") else None
    if names is None:
        for key in ("rectanglelabels", "polygonlabels", "keypointlabels", "labels"):
            if value.get(key):
                names = value[key]
                break
    return names[0] if names else None


class _Classes:
    def __init__(self, tags: dict[str, int] | None, where: str):
        self.fixed = tags is not None
        self.map = dict(tags or {})
        self.where = where

    def index(self, name: str | None, where: str) -> int:
        if name is None:
            return -1
        if name not in self.map:
            if self.fixed:
                raise DataError(f"{where}: label {name!r} is not in --tags ({', '.join(self.map)})")
            self.map[name] = max(self.map.values(), default=-1) + 1
        return self.map[name]

    def names(self) -> list[str]:
        return class_names(self.map)


def _rect_px(value: dict, w: int, h: int, where: str, allow_rotation: bool) -> list:
    x = _check_pct(value.get("x"), "x", where)
    y = _check_pct(value.get("y"), "y", where)
    bw = _check_pct(value.get("width"), "width", where)
    bh = _check_pct(value.get("height"), "height", where)
    rot = float(value.get("rotation") or 0) % 360
    x0, y0, pw, ph = x / 100 * w, y / 100 * h, bw / 100 * w, bh / 100 * h
    if rot:
        if not allow_rotation:
            raise DataError(
                f"{where}: rotated rectangle (rotation={value.get('rotation')}) is not supported; "
                "pass --allow-rotation to store its enclosing axis-aligned box"
            )
        # Label Studio rotates clockwise (degrees) around the top-left corner, in pixels.
        c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
        pts = [
            (x0 + dx * c - dy * s, y0 + dx * s + dy * c)
            for dx, dy in ((0, 0), (pw, 0), (pw, ph), (0, ph))
        ]
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return [
            _num(max(0, min(xs))),
            _num(max(0, min(ys))),
            _num(min(w, max(xs))),
            _num(min(h, max(ys))),
        ]
    if x + bw > 100 + 1e-6 or y + bh > 100 + 1e-6:
        raise DataError(f"{where}: rectangle extends past the image (x+width or y+height > 100)")
    return [_num(x0), _num(y0), _num(x0 + pw), _num(y0 + ph)]


def _pick_annotation(task: dict) -> dict | None:
    for ann in task.get("annotations") or []:
        if not ann.get("was_cancelled"):
            return ann
    return None


def studio_task_to_gt(
    task: dict,
    classes: _Classes,
    prefix: str = "",
    allow_rotation: bool = False,
    where: str = "",
) -> dict[str, Any] | None:
    """One Label Studio task (export format) -> one GT sample, or None without an annotation."""
    ann = _pick_annotation(task)
    if ann is None:
        return None
    tid = task.get("id")
    results = ann.get("result") or []
    to_name = next((r.get("to_name") for r in results if r.get("to_name")), None)
    image_file, image_url = _image_ref(task, to_name, prefix)
    sample = new_sample(image_file=image_file, image_url=image_url)
    w = h = 0
    for r in results:
        if r.get("original_width"):
            w, h = int(r["original_width"]), int(r.get("original_height") or 0)
            break
    sample["width"], sample["height"] = w, h
    instances: list[dict] = []
    by_id: dict[str, dict] = {}
    rect_ids = {r.get("id") for r in results if r.get("type") in RECT and r.get("id")}
    child_polys, kps = [], []
    crowd_ids: set = set()
    for k, r in enumerate(results):
        rtype = r.get("type")
        here = f"{where}task {tid}, result {r.get('id', k)}"
        if rtype not in KNOWN:
            raise DataError(
                f"{here}: unknown result type {rtype!r} (supported: rectanglelabels, polygonlabels, "
                "keypointlabels, choices)"
            )
        value = r.get("value") or {}
        if rtype in (*RECT, *POLY, *KEYP) and not (w and h):
            raise DataError(f"{here}: missing original_width/original_height")
        if rtype in RECT:
            inst = {
                "bbox": _rect_px(value, w, h, here, allow_rotation),
                "label": classes.index(_label_of(value, rtype), here),
                "polys": [],
                "joints": {},
            }
            instances.append(inst)
            by_id[r["id"]] = inst
        elif rtype in POLY:
            px = []
            for p in value.get("points") or []:
                if not (isinstance(p, (list, tuple)) and len(p) == 2):
                    raise DataError(f"{here}: polygon points must be [x, y] pairs")
                px.append(
                    [
                        _num(_check_pct(p[0], "x", here) / 100 * w),
                        _num(_check_pct(p[1], "y", here) / 100 * h),
                    ]
                )
            if not px:
                raise DataError(f"{here}: polygon without points")
            label = classes.index(_label_of(value, rtype), here)
            if r.get("parentID") in rect_ids:
                child_polys.append((r["parentID"], px))
            else:
                xs, ys = [p[0] for p in px], [p[1] for p in px]
                bbox = [min(xs), min(ys), max(xs), max(ys)]
                inst = {"bbox": bbox, "label": label, "polys": [px], "joints": {}}
                instances.append(inst)
                by_id[r.get("id")] = inst
        elif rtype in KEYP:
            x = _check_pct(value.get("x"), "x", here) / 100 * w
            y = _check_pct(value.get("y"), "y", here) / 100 * h
            kps.append((r, [_num(x), _num(y)], classes.index(_label_of(value, rtype), here)))
        elif rtype == "choices" and r.get("from_name") == CROWD:
            if CROWD in (value.get("choices") or []):
                crowd_ids.add(r.get("id"))
        elif rtype == "choices":
            name = ",".join(value.get("choices") or [])
            sample["image_label_name"] = name
            sample["image_label"] = (
                classes.map.get(name, -1) if classes.fixed else classes.index(name, here)
            )
    for parent_id, px in child_polys:
        by_id[parent_id]["polys"].append(px)
    # keypoints: attach to a rectangle parent, else group by root keypoint (antgo's rule)
    groups: dict[str, dict] = {}
    kp_ids = {r.get("id") for r, _, _ in kps}
    for r, pt, label in kps:
        pid = r.get("parentID")
        if pid in by_id:
            by_id[pid]["joints"][label] = pt
            continue
        key = (
            pid
            if pid in kp_ids
            else (r.get("id") if any(q.get("parentID") == r.get("id") for q, _, _ in kps) else "")
        )
        groups.setdefault(key, {})[label] = pt
    for joints in groups.values():
        xs, ys = [p[0] for p in joints.values()], [p[1] for p in joints.values()]
        instances.append(
            {
                "bbox": [min(xs), min(ys), max(xs), max(ys)],
                "label": -1,
                "polys": [],
                "joints": joints,
            }
        )
    sample["bboxes"] = [i["bbox"] for i in instances]
    sample["labels"] = [i["label"] for i in instances]
    crowd = {id(inst) for rid, inst in by_id.items() if rid in crowd_ids}
    if crowd:
        sample["iscrowd"] = [int(id(i) in crowd) for i in instances]
        sample["box_visibility"] = [0 if id(i) in crowd else 1 for i in instances]
    if any(i["polys"] for i in instances):
        sample["segments"] = [
            (
                i["polys"][0]
                if len(i["polys"]) == 1
                else [[v for p in part for v in p] for part in i["polys"]]
            )
            if i["polys"]
            else []
            for i in instances
        ]
    if any(i["joints"] for i in instances):
        k = max(max(i["joints"]) for i in instances if i["joints"]) + 1
        sample["joints2d"] = [[i["joints"].get(j, [0, 0]) for j in range(k)] for i in instances]
        sample["joints_vis"] = [[1 if j in i["joints"] else 0 for j in range(k)] for i in instances]
    return sample


def from_studio(
    src: str | os.PathLike,
    tgt: str | os.PathLike,
    tags: str | dict[str, int] | None = None,
    prefix: str = "",
    allow_rotation: bool = False,
) -> dict[str, Any]:
    """Convert a Label Studio JSON export to ``<tgt>/<name>_label.json`` + ``meta.json``.

    Returns a summary: ``{"gt": path, "samples": n, "skipped": tasks without an annotation}``.
    """
    src = Path(src)
    tasks = _read_export(src)
    classes = _Classes(parse_tags(tags), str(src))
    samples, skipped = [], 0
    for task in tasks:
        sample = studio_task_to_gt(task, classes, prefix, allow_rotation, f"{src}: ")
        if sample is None:
            skipped += 1
            continue
        sample["tag"] = src.stem
        samples.append(sample)
    if not samples:
        raise DataError(
            f"{src}: no annotated task to convert ({len(tasks)} task(s), none with an annotation)"
        )
    tgt = Path(tgt)
    if tgt.exists() and not tgt.is_dir():
        raise UsageError(f"--tgt {tgt}: must be a folder")
    out = tgt / f"{src.stem}_label.json"
    save_gt(out, samples)
    meta = read_meta(tgt) or default_meta()
    meta["extent"] = {"total": len(samples)}
    meta.setdefault("meta", {})["category"] = classes.names()
    write_meta(tgt, meta)
    return {"gt": str(out), "samples": len(samples), "skipped": skipped}


def _read_export(src: Path) -> list[dict]:
    if not src.is_file():
        raise DataError(f"{src}: no such file")
    tasks = read_json(src, "a Label Studio JSON export")
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise DataError(f"{src}: expected a JSON list of Label Studio tasks")
    if tasks and not any(k in t for t in tasks for k in ("data", "annotations", "completions")):
        hint = (
            "; it looks like a GT file: use --to to make Label Studio tasks from it"
            if any("image_file" in t for t in tasks)
            else ""
        )
        raise DataError(f"{src}: not a Label Studio export (no task has 'data'){hint}")
    return tasks


def _pct(v: float, size: int) -> float:
    return v / size * 100.0


def gt_to_studio_task(
    sample: dict,
    index: int,
    names: list[str],
    prefix: str = "",
    where: str = "",
    dropped: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One GT sample -> one Label Studio task with one annotation (the export format).

    RLE masks have no Label Studio form: the instance's box is exported and the mask dropped
    (counted in ``dropped["rle_masks"]``). Crowd instances get a per-region ``crowd`` choice.
    """
    w, h = int(sample.get("width") or 0), int(sample.get("height") or 0)
    image = sample.get("image_file") or ""
    image = f"{prefix}{image}" if image else sample.get("image_url", "")
    name_of = lambda i: names[i] if 0 <= i < len(names) else str(i)  # noqa: E731
    common = {"to_name": "image", "original_width": w, "original_height": h, "image_rotation": 0}
    results: list[dict] = []
    bboxes = sample.get("bboxes") or []
    if bboxes and not (w and h):
        raise DataError(
            f"{where}sample {index}: width/height are 0, cannot express boxes in percent"
        )
    labels = sample.get("labels") or []
    segments = sample.get("segments") or []
    joints = sample.get("joints2d") or []
    joints_vis = sample.get("joints_vis") or []
    crowd = sample.get("iscrowd") or []
    for i, box in enumerate(bboxes):
        label = labels[i] if i < len(labels) else -1
        rid = f"s{index}i{i}"
        seg = segments[i] if i < len(segments) else []
        if isinstance(seg, dict):  # COCO RLE (crowd regions): the box goes, the mask cannot
            if dropped is not None:
                dropped["rle_masks"] = dropped.get("rle_masks", 0) + 1
            seg = []
        parts = []
        if seg:
            if all(isinstance(p, (list, tuple)) and len(p) == 2 for p in seg):
                parts = [seg]
            else:
                flat = seg if all(isinstance(v, list) for v in seg) else [seg]
                parts = [[[part[k], part[k + 1]] for k in range(0, len(part), 2)] for part in flat]
        enclosing = None
        if len(parts) == 1:
            xs, ys = [p[0] for p in parts[0]], [p[1] for p in parts[0]]
            enclosing = [min(xs), min(ys), max(xs), max(ys)]
        polygon_only = (
            enclosing is not None
            and all(abs(a - b) < 1e-6 for a, b in zip(enclosing, box))
            and not (i < len(joints) and joints[i])
        )
        if not polygon_only:
            x0, y0, x1, y1 = box
            value = {
                "x": _pct(x0, w),
                "y": _pct(y0, h),
                "width": _pct(x1 - x0, w),
                "height": _pct(y1 - y0, h),
                "rotation": 0,
            }
            if label >= 0:
                value["rectanglelabels"] = [name_of(label)]
            results.append(
                {
                    "id": rid,
                    "type": "rectanglelabels" if label >= 0 else "rectangle",
                    "from_name": "label",
                    "value": value,
                    **common,
                }
            )
        for k, part in enumerate(parts):
            value = {"points": [[_pct(p[0], w), _pct(p[1], h)] for p in part], "closed": True}
            if label >= 0:
                value["polygonlabels"] = [name_of(label)]
            res = {
                "id": rid if polygon_only else f"{rid}p{k}",
                "type": "polygonlabels" if label >= 0 else "polygon",
                "from_name": "polygon",
                "value": value,
                **common,
            }
            if not polygon_only:
                res["parentID"] = rid
            results.append(res)
        if i < len(crowd) and crowd[i]:
            results.append(
                {
                    "id": rid,  # per-region: the same id as its region
                    "type": "choices",
                    "from_name": CROWD,
                    "to_name": "image",
                    "value": {"choices": [CROWD]},
                }
            )
        inst_joints = joints[i] if i < len(joints) else []
        inst_vis = joints_vis[i] if i < len(joints_vis) else []
        for j, pt in enumerate(inst_joints):
            if inst_vis and (j >= len(inst_vis) or not inst_vis[j]):
                continue
            results.append(
                {
                    "id": f"{rid}k{j}",
                    "type": "keypointlabels",
                    "from_name": "keypoint",
                    "parentID": rid,
                    "value": {
                        "x": _pct(pt[0], w),
                        "y": _pct(pt[1], h),
                        "width": 0.5,
                        "keypointlabels": [name_of(j)],
                    },
                    **common,
                }
            )
    label = sample.get("image_label", -1)
    name = sample.get("image_label_name") or (
        name_of(label) if label is not None and label >= 0 else ""
    )
    if name:
        results.append(
            {
                "id": f"s{index}c",
                "type": "choices",
                "from_name": "choice",
                "to_name": "image",
                "value": {"choices": name.split(",")},
            }
        )
    return {
        "id": index + 1,
        "data": {"image": image},
        "annotations": [
            {"id": index + 1, "result": results, "was_cancelled": False, "ground_truth": False}
        ],
        "predictions": [],
    }


def to_studio(
    src: str | os.PathLike,
    tgt: str | os.PathLike,
    tags: str | dict[str, int] | None = None,
    prefix: str = "",
) -> dict[str, Any]:
    """Convert a GT file to a Label Studio JSON (importable tasks with annotations).

    Class names come from ``tags`` or the ``meta.json`` beside ``src``. Writes
    ``<tgt>/<name>_label_studio.json``.
    """
    src = Path(src)
    samples = load_gt(src, inside=False)  # tasks reference images; none is read
    mapping = parse_tags(tags)
    if mapping:
        names = _Classes(mapping, "").names()
    else:
        meta = read_meta(src.parent if src.is_file() else src) or {}
        names = list((meta.get("meta") or {}).get("category") or [])
    dropped: dict[str, int] = {}
    tasks = [
        gt_to_studio_task(s, i, names, prefix, f"{src}: ", dropped) for i, s in enumerate(samples)
    ]
    tgt = Path(tgt)
    if tgt.exists() and not tgt.is_dir():
        raise UsageError(f"--tgt {tgt}: must be a folder")
    out = tgt / f"{src.stem}_label_studio.json"
    from antgo_mlflow.fileio import atomic_write_json

    atomic_write_json(out, tasks, indent=1)
    return {"json": str(out), "tasks": len(tasks), "rle_masks_dropped": dropped.get("rle_masks", 0)}
