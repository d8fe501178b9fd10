"""Convert standard GT samples to FiftyOne samples and back (one converter each way).

Mapping (FiftyOne field <- GT field):

* ``filepath``        <- ``image_file`` resolved against the GT folder (``image_file`` is kept too)
* ``metadata``        <- ``width``/``height`` (read from the image header when the GT has 0)
* ``classification``  <- ``image_label`` + ``image_label_name`` (``Classification``)
* ``detections``      <- ``bboxes`` (xyxy pixels -> relative xywh) + ``labels`` + ``box_visibility``
  (a box with visibility 0 also gets ``iscrowd=1``: ``evaluate_detections`` ignores it as COCO does)
* ``keypoints``       <- ``joints2d`` + ``joints_vis`` (one ``Keypoint`` per instance, relative coords)
* ``segments``        <- ``segments`` polygons (one closed, filled ``Polyline`` per instance)
* ``predictions``     <- ``predictions.bboxes/labels/scores`` (``Detections`` with confidences)
* ``prediction_class``<- ``predictions.image_label/image_score`` (``Classification`` with confidence)
* ``tag``             <- ``tag`` (provenance string); sample ``tags`` <- the GT list field ``tags``
* ``al_score``, ``al_rank``, ``label_quality`` <- the same sample fields (active learning), as
  sortable number fields (also kept in ``antgo_extra`` for the round trip)
* ``antgo_extra``     <- everything FiftyOne cannot hold as a label (see below)

Class names come from ``meta.json`` (``meta.category``); each label keeps its ``class_index``.

What FiftyOne cannot hold as labels, and how it still round-trips: COCO RLE segments and empty
per-instance segments, predictions keys other than the ones above, unknown sample fields,
``joints_vis`` whose length differs from ``joints2d``, a 0 ``width``/``height`` in the GT, and
the key order of the sample are stored verbatim in the ``antgo_extra`` dict field (not drawn by
the App). Coordinates go through relative floats and come back rounded to 6 decimals (an
integral value comes back as an int). Edits made in the App (label changes, deleted or added
boxes, sample tags) are taken from the labels; a label name not in the class list is appended
to it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from antgo_mlflow.errors import DataError, one_line, require

EXTRA = "antgo_extra"
KEY = "antgo_key"
INDEX = "antgo_index"
LABEL_FIELDS = (
    "classification",
    "detections",
    "keypoints",
    "segments",
    "predictions",
    "prediction_class",
)
_PRED_KEYS = ("bboxes", "labels", "scores", "image_label", "image_label_name", "image_score")
#: Numeric sample fields shown as sortable FiftyOne fields, with the type each is stored as.
SCORE_FIELDS = {"al_score": float, "al_rank": int, "label_quality": float}


def fo():
    """The ``fiftyone`` module (one-line hint when the ``review`` extra is missing)."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")
    os.environ.setdefault("FIFTYONE_DATABASE_VALIDATION", "false")
    return require("fiftyone", "review")


def _name(idx: int | None, classes: list[str]) -> str | None:
    if idx is None:
        return None
    return classes[idx] if 0 <= idx < len(classes) else str(idx)


def _index(label: str | None, classes: list[str]) -> int:
    """Class index of ``label``; an unknown name is appended to ``classes``."""
    if label is None:
        return -1
    if label not in classes:
        if label.lstrip("-").isdigit() and int(label) >= len(classes):
            return int(label)
        classes.append(label)
    return classes.index(label)


def _num(v: float) -> float | int:
    r = round(float(v), 6)
    return int(r) if r.is_integer() else r


def _image_size(sample: dict, path: Path, index: int) -> tuple[int, int]:
    w, h = int(sample.get("width") or 0), int(sample.get("height") or 0)
    if w > 0 and h > 0:
        return w, h
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return 0, 0


def _needs_size(sample: dict) -> bool:
    return any(sample.get(k) for k in ("bboxes", "joints2d", "segments")) or bool(
        (sample.get("predictions") or {}).get("bboxes")
    )


def _seg_kind(seg: Any) -> str | None:
    """'points' ([[x, y], ...]), 'coco' ([[x0, y0, x1, y1, ...], ...]), 'flat' or None (extra)."""
    if not isinstance(seg, list) or not seg:
        return None
    if all(isinstance(p, (list, tuple)) and len(p) == 2 for p in seg):
        if all(all(isinstance(x, (int, float)) for x in p) for p in seg):
            return "points"
    if all(isinstance(p, list) and p and len(p) % 2 == 0 for p in seg):
        if all(all(isinstance(x, (int, float)) for x in p) for p in seg):
            return "coco"
    if len(seg) % 2 == 0 and all(isinstance(x, (int, float)) for x in seg):
        return "flat"
    return None


def gt_to_fo_sample(sample: dict, base_dir: str | os.PathLike, classes: list[str], index: int = 0):
    """One GT sample -> a ``fiftyone.Sample`` (see the module docstring for the mapping)."""
    fo_ = fo()
    base_dir = Path(base_dir)
    extra: dict[str, Any] = {"_keys": list(sample.keys())}
    image_file = sample.get("image_file") or ""
    image_url = sample.get("image_url") or ""
    if image_file:
        filepath = (base_dir / image_file).resolve()
    else:
        # URL-only sample: FiftyOne needs a local path; the URL itself is kept in `image_url`.
        import hashlib

        filepath = base_dir / ".urls" / hashlib.sha1(image_url.encode()).hexdigest()
    w, h = _image_size(sample, filepath, index)
    if not sample.get("width") or not sample.get("height"):
        extra["width"], extra["height"] = sample.get("width", 0), sample.get("height", 0)
    if _needs_size(sample) and not (w and h):
        raise DataError(
            f"sample {index} ({image_file or image_url}): width/height are 0 and the image "
            "cannot be read, so boxes cannot be made relative"
        )
    fs = fo_.Sample(filepath=str(filepath))
    fs["image_file"] = image_file
    fs["image_url"] = image_url
    fs["tag"] = sample.get("tag", "")
    fs[INDEX] = index
    if w and h:
        fs["metadata"] = fo_.ImageMetadata(width=w, height=h)
    tags = sample.get("tags")
    if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
        fs.tags = list(tags)
    elif tags is not None:
        extra["tags"] = tags

    idx = sample.get("image_label", -1)
    name = sample.get("image_label_name", "") or ""
    if (isinstance(idx, int) and idx >= 0) or name:
        idx = idx if isinstance(idx, int) and idx >= 0 else None
        fs["classification"] = fo_.Classification(
            label=name or _name(idx, classes), class_index=idx, gt_name=name
        )

    labels = list(sample.get("labels") or [])
    vis = list(sample.get("box_visibility") or [])
    bboxes = sample.get("bboxes") or []
    if bboxes or "bboxes" in sample:
        dets = []
        for i, (x0, y0, x1, y1) in enumerate(bboxes):
            li = labels[i] if i < len(labels) else None
            visibility = vis[i] if i < len(vis) else None
            # COCO's crowd flag, which FiftyOne's evaluate_detections honours (never written back)
            crowd = {"iscrowd": 1} if visibility == 0 else {}
            dets.append(
                fo_.Detection(
                    label=_name(li, classes),
                    bounding_box=[x0 / w, y0 / h, (x1 - x0) / w, (y1 - y0) / h],
                    class_index=li,
                    visibility=visibility,
                    **crowd,
                )
            )
        fs["detections"] = fo_.Detections(detections=dets)

    joints = sample.get("joints2d") or []
    joints_vis = sample.get("joints_vis") or []
    if joints_vis and len(joints_vis) != len(joints):
        extra["joints_vis"] = joints_vis
        joints_vis = []
    if joints:
        kps = []
        for i, inst in enumerate(joints):
            attrs = {"instance": i}
            if any(len(p) > 2 for p in inst):
                attrs["tail"] = [list(p[2:]) for p in inst]
            kps.append(
                fo_.Keypoint(
                    label=_name(labels[i], classes) if len(labels) == len(joints) else None,
                    points=[[p[0] / w, p[1] / h] for p in inst],
                    visibility=joints_vis[i] if joints_vis else None,
                    **attrs,
                )
            )
        fs["keypoints"] = fo_.Keypoints(keypoints=kps)

    segments = sample.get("segments") or []
    if segments:
        lines, raw = [], {}
        for i, seg in enumerate(segments):
            kind = _seg_kind(seg)
            if kind is None:
                raw[str(i)] = seg
                continue
            shapes = {"points": lambda s: [s], "coco": lambda s: s, "flat": lambda s: [s]}[kind](
                seg
            )
            if kind == "points":
                pts = [[[p[0] / w, p[1] / h] for p in shape] for shape in shapes]
            else:
                pts = [[[s[k] / w, s[k + 1] / h] for k in range(0, len(s), 2)] for s in shapes]
            lines.append(
                fo_.Polyline(
                    label=_name(labels[i], classes) if len(labels) == len(segments) else None,
                    points=pts,
                    closed=True,
                    filled=True,
                    instance=i,
                    seg_format=kind,
                )
            )
        fs["segments"] = fo_.Polylines(polylines=lines)
        extra["segments_n"] = len(segments)
        if raw:
            extra["segments_raw"] = raw

    preds = sample.get("predictions")
    if isinstance(preds, dict) and preds:
        rest = {k: v for k, v in preds.items() if k not in _PRED_KEYS}
        pb = preds.get("bboxes")
        if isinstance(pb, list):
            pl, ps = list(preds.get("labels") or []), list(preds.get("scores") or [])
            fs["predictions"] = fo_.Detections(
                detections=[
                    fo_.Detection(
                        label=_name(pl[i] if i < len(pl) else None, classes),
                        bounding_box=[b[0] / w, b[1] / h, (b[2] - b[0]) / w, (b[3] - b[1]) / h],
                        confidence=ps[i] if i < len(ps) else None,
                        class_index=pl[i] if i < len(pl) else None,
                    )
                    for i, b in enumerate(pb)
                ]
            )
            extra["pred_has"] = [k for k in ("labels", "scores") if k in preds]
        if "image_label" in preds or "image_label_name" in preds:
            pi = preds.get("image_label")
            fs["prediction_class"] = fo_.Classification(
                label=preds.get("image_label_name") or _name(pi, classes),
                confidence=preds.get("image_score"),
                class_index=pi,
                gt_name=preds.get("image_label_name"),
                has_score="image_score" in preds,
            )
        extra["pred_keys"] = list(preds.keys())
        if rest:
            extra["predictions"] = rest
    elif "predictions" in sample:
        extra["predictions_raw"] = preds

    known = set(_HANDLED)
    for k, v in sample.items():
        if k not in known:
            extra.setdefault("fields", {})[k] = v
    for k, kind in SCORE_FIELDS.items():
        v = sample.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            fs[k] = kind(v)
    fs[EXTRA] = extra
    return fs


_HANDLED = (
    "image_file",
    "image_url",
    "height",
    "width",
    "tag",
    "tags",
    "image_label",
    "image_label_name",
    "bboxes",
    "labels",
    "box_visibility",
    "joints2d",
    "joints_vis",
    "segments",
    "predictions",
)


def _get(fs, field: str):
    try:
        return fs[field]
    except (KeyError, AttributeError):
        return None


def _attr(label, name: str):
    try:
        return label[name]
    except (KeyError, AttributeError):
        return None


def _class_of(label, classes: list[str]) -> int | None:
    """The class index of a label: its stored index unless the App changed its name."""
    idx = _attr(label, "class_index")
    if label.label is None:
        return idx
    if idx is not None and _name(idx, classes) == label.label:
        return idx
    return _index(label.label, classes)


def fo_sample_to_gt(fs, classes: list[str]) -> dict[str, Any]:
    """One FiftyOne sample (made by :func:`gt_to_fo_sample`, maybe edited in the App) -> GT dict."""
    extra = dict(_get(fs, EXTRA) or {})
    meta = _get(fs, "metadata")
    w = getattr(meta, "width", 0) or 0
    h = getattr(meta, "height", 0) or 0
    out: dict[str, Any] = {}
    out["image_file"] = _get(fs, "image_file") or ""
    out["image_url"] = _get(fs, "image_url") or ""
    out["height"] = extra.get("height", h)
    out["width"] = extra.get("width", w)
    out["tag"] = _get(fs, "tag") or ""
    if "tags" in extra:
        out["tags"] = extra["tags"]
    elif fs.tags or "tags" in extra.get("_keys", []):
        out["tags"] = list(fs.tags)

    cls = _get(fs, "classification")
    if cls is not None:
        idx = _attr(cls, "class_index")
        gt_name = _attr(cls, "gt_name") or ""
        if cls.label == (gt_name or _name(idx, classes)):
            out["image_label"] = -1 if idx is None else idx
            out["image_label_name"] = gt_name
        else:
            out["image_label"] = _index(cls.label, classes)
            out["image_label_name"] = cls.label or ""
    else:
        out["image_label"], out["image_label_name"] = -1, ""

    dets = _get(fs, "detections")
    bboxes, labels, vis = [], [], []
    for d in dets.detections if dets is not None else []:
        x, y, bw, bh = d.bounding_box
        bboxes.append([_num(x * w), _num(y * h), _num((x + bw) * w), _num((y + bh) * h)])
        labels.append(_class_of(d, classes))
        vis.append(_attr(d, "visibility"))
    out["bboxes"] = bboxes
    out["labels"] = (
        [] if all(v is None for v in labels) else [-1 if v is None else v for v in labels]
    )
    out["box_visibility"] = (
        [] if all(v is None for v in vis) else [0 if v is None else v for v in vis]
    )

    kps = _get(fs, "keypoints")
    joints, joints_vis = [], []
    for kp in kps.keypoints if kps is not None else []:
        tail = _attr(kp, "tail")
        pts = [[_num(p[0] * w), _num(p[1] * h)] for p in kp.points]
        if tail:
            pts = [p + list(t) for p, t in zip(pts, tail)]
        joints.append(pts)
        joints_vis.append(_attr(kp, "visibility"))
    out["joints2d"] = joints
    if "joints_vis" in extra:
        out["joints_vis"] = extra["joints_vis"]
    else:
        out["joints_vis"] = (
            [] if all(v is None for v in joints_vis) else [v or [] for v in joints_vis]
        )

    polys = _get(fs, "segments")
    raw = {int(k): v for k, v in (extra.get("segments_raw") or {}).items()}
    by_instance: dict[int, Any] = dict(raw)
    next_free = extra.get("segments_n", 0)
    for pl in polys.polylines if polys is not None else []:
        kind = _attr(pl, "seg_format") or "points"
        shapes = [[[_num(p[0] * w), _num(p[1] * h)] for p in shape] for shape in pl.points]
        if kind == "points":
            seg = shapes[0] if shapes else []
        elif kind == "flat":
            seg = [v for p in (shapes[0] if shapes else []) for v in p]
        else:
            seg = [[v for p in shape for v in p] for shape in shapes]
        inst = _attr(pl, "instance")
        if inst is None:  # drawn in the App
            inst, next_free = next_free, next_free + 1
        by_instance[inst] = seg
    n = max([extra.get("segments_n", 0), *(k + 1 for k in by_instance)]) if by_instance else 0
    out["segments"] = [by_instance.get(i, []) for i in range(n)]

    pred_keys = extra.get("pred_keys")
    if pred_keys is not None:
        preds: dict[str, Any] = {}
        pdets = _get(fs, "predictions")
        if pdets is not None:
            preds["bboxes"] = [
                [_num(x * w), _num(y * h), _num((x + bw) * w), _num((y + bh) * h)]
                for x, y, bw, bh in (d.bounding_box for d in pdets.detections)
            ]
            if "labels" in extra.get("pred_has", []):
                preds["labels"] = [_class_of(d, classes) for d in pdets.detections]
            if "scores" in extra.get("pred_has", []):
                preds["scores"] = [d.confidence for d in pdets.detections]
        pc = _get(fs, "prediction_class")
        if pc is not None:
            if "image_label" in pred_keys:
                preds["image_label"] = _attr(pc, "class_index")
            if _attr(pc, "gt_name") is not None:
                preds["image_label_name"] = _attr(pc, "gt_name")
            if _attr(pc, "has_score"):
                preds["image_score"] = pc.confidence
        preds.update(extra.get("predictions") or {})
        out["predictions"] = {k: preds[k] for k in pred_keys if k in preds}
    elif "predictions_raw" in extra:
        out["predictions"] = extra["predictions_raw"]
    else:
        out["predictions"] = {}

    out.update(extra.get("fields") or {})
    keys = extra.get("_keys")
    if keys is None:
        return out
    # Keep the original keys in order; fields that became non-empty in the App are added.
    ordered = {k: out[k] for k in keys if k in out}
    for k, v in out.items():
        if k not in ordered and v not in ([], {}, "", -1, 0):
            ordered[k] = v
    return ordered


def gt_to_fo_samples(samples: list[dict], base_dir, classes: list[str]) -> list:
    """Convert a GT list; each FiftyOne sample gets ``antgo_key`` (unique) and ``antgo_index``."""
    seen: dict[str, int] = {}
    out = []
    for i, s in enumerate(samples):
        fs = gt_to_fo_sample(s, base_dir, classes, i)
        key = s.get("image_file") or s.get("image_url") or ""
        n = seen.get(key, 0)
        seen[key] = n + 1
        fs[KEY] = key if n == 0 else f"{key}#{n}"
        out.append(fs)
    return out


def dataset_to_gt(dataset) -> tuple[list[dict], list[str]]:
    """All samples of a dataset (made by :func:`load_dataset`) as GT, in GT order, + class names."""
    classes = list(dataset.default_classes or [])
    samples = sorted(dataset, key=lambda s: (_get(s, INDEX) is None, _get(s, INDEX) or 0))
    return [fo_sample_to_gt(s, classes) for s in samples], classes


def load_dataset(
    name: str,
    samples: list[dict],
    base_dir: str | os.PathLike,
    meta: dict | None = None,
    persistent: bool = True,
):
    """Create or update the FiftyOne dataset ``name`` so that it mirrors ``samples``.

    Samples are matched by ``antgo_key`` (``image_file``, then ``#n`` for repeats): re-running
    updates labels in place (no duplicates), keeps review tags given in the App, adds new samples
    and deletes samples no longer in the GT.
    """
    fo_ = fo()
    classes = list(((meta or {}).get("meta") or {}).get("category") or [])
    try:
        exists = fo_.dataset_exists(name)
        dataset = fo_.load_dataset(name) if exists else fo_.Dataset(name)
    except Exception as exc:  # noqa: BLE001 - any database failure is a service problem
        from antgo_mlflow.errors import ServiceError

        raise ServiceError(
            f"FiftyOne database unavailable: {one_line(exc) or type(exc).__name__}"
        ) from None
    dataset.persistent = persistent
    dataset.default_classes = classes
    dataset.info["antgo_meta"] = meta or {}
    skeleton = ((meta or {}).get("meta") or {}).get("skeleton") or []
    if skeleton:
        dataset.default_skeleton = fo_.KeypointSkeleton(
            labels=None, edges=[list(e) for e in skeleton]
        )
    dataset.save()
    new = gt_to_fo_samples(samples, base_dir, classes)
    existing = {}
    if len(dataset):
        existing = dict(zip(dataset.values(KEY), dataset.values("id")))
    to_add, updates = [], []
    for fs in new:
        (updates if fs[KEY] in existing else to_add).append(fs)
    keep = {existing[fs[KEY]] for fs in updates}
    if updates:
        # bulk writes keyed by antgo_key (one per field) instead of one save per sample
        schema = dataset.get_field_schema()
        view = dataset.select(list(keep))
        old_tags = dict(zip(view.values(KEY), view.values("tags")))
        fields = ("image_file", "image_url", "tag", INDEX, EXTRA, "metadata", *LABEL_FIELDS)
        for field in (*fields, *SCORE_FIELDS):
            values = {fs[KEY]: _get(fs, field) for fs in updates}
            if field in schema or any(v is not None for v in values.values()):
                view.set_values(field, values, key_field=KEY)
        tags = {fs[KEY]: sorted(set(old_tags.get(fs[KEY]) or []) | set(fs.tags)) for fs in updates}
        view.set_values("tags", tags, key_field=KEY)
    stale = [sid for sid in existing.values() if sid not in keep]
    if stale:
        dataset.delete_samples(stale)
    if to_add:
        dataset.add_samples(to_add, progress=False)
    return dataset


def add_gt_file(dataset, path: str | os.PathLike) -> int:
    """Append the samples of a GT file to ``dataset`` (the App's import action); returns the count.

    Samples already in the dataset (same resolved image file) are skipped; ``meta.json`` class
    names are appended to the dataset's class list.
    """
    from antgo_mlflow.gt import load_gt, read_meta

    path = Path(path)
    samples = load_gt(path)
    folder = path if path.is_dir() else path.parent
    classes = list(dataset.default_classes or [])
    for name in ((read_meta(folder) or {}).get("meta") or {}).get("category") or []:
        if name not in classes:
            classes.append(name)
    have = set(dataset.values("filepath")) if len(dataset) else set()
    offset = len(dataset)
    new = [s for s in gt_to_fo_samples(samples, folder, classes) if s.filepath not in have]
    for k, s in enumerate(new):
        s[INDEX] = offset + k
        s[KEY] = s.filepath
    dataset.default_classes = classes
    dataset.save()
    if new:
        dataset.add_samples(new, progress=False)
    return len(new)


def filter_by_dataset_tags(
    dataset_name: str,
    src: str | os.PathLike | None = None,
    tags: str | list[str] | None = None,
    no_tags: str | list[str] | None = None,
    out_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """``filter/tags`` with the tags read from FiftyOne dataset ``dataset_name``'s sample tags
    (``src`` may be omitted: the GT is rebuilt from the dataset); returns a summary dict."""
    from antgo_mlflow.gt import load_gt
    from antgo_mlflow.tools.filter_tags import check_request, output_path, write_kept

    want, exclude = check_request(src, None, tags, no_tags, dataset_name=dataset_name)
    fo_ = fo()
    if not fo_.dataset_exists(dataset_name):
        raise DataError(f"--dataset-name {dataset_name}: no such FiftyOne dataset")
    dataset = fo_.load_dataset(dataset_name)
    by_key = dict(zip(dataset.values(KEY), dataset.values("tags")))
    if src is None:
        samples, _ = dataset_to_gt(dataset)
        name = dataset_name
    else:
        samples, name = load_gt(src, inside=False), Path(src).stem
    allowed = list(dataset.info.get("antgo_review_tags") or [])
    record = [by_key.get(k) or [] for k in _sample_keys(samples)]
    out = output_path(name, src, out_dir)
    return write_kept(samples, record, want, exclude, allowed, f"dataset {dataset_name}", out)


def _sample_keys(samples: list[dict]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for s in samples:
        key = s.get("image_file") or s.get("image_url") or ""
        n = seen.get(key, 0)
        seen[key] = n + 1
        out.append(key if n == 0 else f"{key}#{n}")
    return out
