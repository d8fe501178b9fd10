"""Keep GT samples by their review tags (from a browser result JSON or a FiftyOne dataset).

Semantics: a sample is kept when it carries ALL of ``tags`` and NONE of ``no_tags``. antgo kept a
sample only when its tag set was exactly equal to ``--tags``; here extra tags do not drop a sample
(``--tags=valid`` keeps a sample tagged ``valid,night``); use ``--no-tags`` to exclude.
A sample with no review record has no tags.

Tag records are read from ``<name>_browser.json`` as written by ``browser/images --feedback``
(``{"samples": [{"index", "image_file", "tags"}]}``) or antgo's own browser download
(``{key: [{"id": index, "tag": [...]}]}``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from antgo_mlflow.errors import DataError, UsageError
from antgo_mlflow.gt import load_gt, save_gt


def split_tags(text: str | list[str] | None) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (blanks dropped)."""
    if not text:
        return []
    items = text.split(",") if isinstance(text, str) else list(text)
    return [t.strip() for t in items if t and t.strip()]


def read_tag_record(path: str | os.PathLike, samples: list[dict]) -> list[list[str]]:
    """Per-sample tag lists (aligned with ``samples``) from a browser result JSON."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: invalid JSON ({exc})") from None
    out: list[list[str]] = [[] for _ in samples]
    by_file = {s.get("image_file") or s.get("image_url"): i for i, s in enumerate(samples)}
    if isinstance(record, dict) and isinstance(record.get("samples"), list):
        for k, entry in enumerate(record["samples"]):
            i = _locate(entry, by_file, len(samples), f"{path}: entry {k}")
            out[i] = split_tags(entry.get("tags"))
        return out
    if isinstance(record, dict):  # antgo: {key: [{"id": index, "tag": [...]}, ...]}
        for key, value in record.items():
            entry = value[0] if isinstance(value, list) and value else value
            if not isinstance(entry, dict) or "id" not in entry:
                raise DataError(f"{path}: entry {key!r} has no 'id' (not a browser result)")
            i = _locate(
                {"index": int(entry["id"])}, by_file, len(samples), f"{path}: entry {key!r}"
            )
            out[i] = split_tags(entry.get("tag"))
        return out
    raise DataError(f"{path}: expected a browser result object with 'samples'")


def review_tags(path: str | os.PathLike) -> list[str]:
    """The allowed tags stored in a browser result (empty for antgo's format)."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    tags = record.get("tags") if isinstance(record, dict) and "samples" in record else None
    return split_tags(tags) if isinstance(tags, list) else []


def _locate(entry: Any, by_file: dict, n: int, where: str) -> int:
    if not isinstance(entry, dict):
        raise DataError(f"{where}: expected an object")
    key = entry.get("image_file") or entry.get("image_url")
    if key and key in by_file:
        return by_file[key]
    idx = entry.get("index")
    if isinstance(idx, int) and 0 <= idx < n and not key:
        return idx
    raise DataError(f"{where}: sample {key or idx!r} is not in the GT file")


def keep(tags: list[str], want: list[str], exclude: list[str]) -> bool:
    """True when ``tags`` holds all of ``want`` and none of ``exclude``."""
    have = set(tags)
    return set(want) <= have and not (set(exclude) & have)


def check_request(
    src, tgt, tags, no_tags, dataset_name: str | None = None
) -> tuple[list[str], list[str]]:
    """Validate a filter/tags request; returns ``(want, exclude)`` (UsageError otherwise)."""
    want, exclude = split_tags(tags), split_tags(no_tags)
    if not want and not exclude:
        raise UsageError("give --tags and/or --no-tags")
    both = set(want) & set(exclude)
    if both:
        raise UsageError(f"--tags and --no-tags both name {sorted(both)}")
    if (tgt is None) == (dataset_name is None):
        raise UsageError("give exactly one of --tgt (a browser result JSON) or --dataset-name")
    if src is None and dataset_name is None:
        raise UsageError("--src is required without --dataset-name")
    return want, exclude


def write_kept(
    samples: list[dict],
    record: list[list[str]],
    want: list[str],
    exclude: list[str],
    allowed: list[str],
    where: str,
    out: Path,
) -> dict[str, Any]:
    """Write the samples whose tags pass to ``out``; the tags must be review tags of ``where``."""
    unknown = [t for t in want + exclude if allowed and t not in allowed]
    if unknown:
        raise UsageError(
            f"tag {unknown[0]!r} is not one of the review tags of {where} ({', '.join(allowed)})"
        )
    kept = [s for s, t in zip(samples, record) if keep(t, want, exclude)]
    save_gt(out, kept)
    return {"out": str(out), "kept": len(kept), "total": len(samples)}


def output_path(name: str, src, out_dir) -> Path:
    """``<out_dir or beside src>/<name>_filter_tags.json``."""
    folder = Path(out_dir) if out_dir else (Path(src).parent if src else Path.cwd())
    return folder / f"{name}_filter_tags.json"


def filter_by_tags(
    src: str | os.PathLike,
    tgt: str | os.PathLike,
    tags: str | list[str] | None = None,
    no_tags: str | list[str] | None = None,
    out_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write ``<name>_filter_tags.json`` with the samples of ``src`` whose tags in ``tgt`` (a
    browser result JSON) pass; returns a summary dict. Tags kept in a FiftyOne dataset:
    ``antgo_mlflow.review.fiftyone_io.filter_by_dataset_tags``.
    """
    want, exclude = check_request(src, tgt, tags, no_tags)
    samples = load_gt(src, inside=False)
    record = read_tag_record(tgt, samples)
    out = output_path(Path(src).stem, src, out_dir)
    return write_kept(samples, record, want, exclude, review_tags(tgt), str(tgt), out)
