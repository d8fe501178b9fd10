"""Step *label*: the selected samples go to a Label Studio project; the step waits - across
restarts - until its tasks are done, then writes the annotations as standard GT.

The Label Studio project's id is recorded on the step run the moment it exists (tag
``antgo.label.project_id``), so a restarted server reattaches to it and never creates a second one.
Each call polls once: unfinished tasks (or an unreachable Label Studio) raise ``StepWaiting``, and
the server goes on with other projects. ``timeout`` (seconds since the project was made) ends the
wait: ``policy="partial"`` keeps what is labelled, ``"fail"`` fails the step.

Inputs: ``selected`` (GT file), ``classes``, ``label_type`` (CLASS...), ``url`` (Label Studio; the
API token comes from ``$LABEL_STUDIO_API_KEY``), ``document_root`` (that Label Studio's
``LOCAL_FILES_DOCUMENT_ROOT``: the server's workdir, where the selected images are), ``timeout``,
``policy``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from antgo_mlflow.errors import ServiceError, UsageError

PROJECT_TAG = "antgo.label.project_id"
CREATED_TAG = "antgo.label.created"
TOKEN_ENV = "LABEL_STUDIO_API_KEY"


def _api(url: str):
    from antgo_mlflow.review.labelling import Api

    token = os.environ.get(TOKEN_ENV)
    if not url or not token:
        raise UsageError(
            "project/label: the automation server needs a Label Studio: set url in "
            f"'antgo update project/label --config=...' and its API token in ${TOKEN_ENV}"
        )
    return Api(url, token)


def _session(ctx, inputs: dict, api, samples: list[dict]):
    """The step's LabelSession: reattached from the run's tag, else created (tag set at once)."""
    from antgo_mlflow.review.labelling import LabelSession, label_config

    tags = {name: i for i, name in enumerate(inputs["classes"])}
    import urllib.parse

    root = Path(os.path.commonpath([os.path.dirname(s["image_file"]) for s in samples]))
    doc_root = Path(inputs["document_root"]).resolve()
    if doc_root not in root.parents:
        raise UsageError(
            f"{root}: the images to label must be under Label Studio's document root {doc_root}"
        )

    def ref(path: str) -> str:
        return "/data/local-files/?d=" + urllib.parse.quote(str(Path(path).relative_to(doc_root)))

    known = ctx.step_tags().get(PROJECT_TAG)
    if known:
        project = api.call("GET", f"/api/projects/{known}")
        session = LabelSession(api, project, tags, root, None, ctx.echo)
    else:
        name = f"{ctx.project} iteration {ctx.iteration}"
        project = api.call(
            "POST",
            "/api/projects",
            {"title": name[:50], "label_config": label_config(tags, inputs["label_type"])},
        )
        ctx.tag(PROJECT_TAG, str(project["id"]))  # before anything else: no second project
        ctx.tag(CREATED_TAG, f"{time.time():.3f}")
        session = LabelSession(api, project, tags, root, None, ctx.echo)
        api.call(
            "POST",
            "/api/storages/localfiles",
            {"project": project["id"], "path": str(root), "title": "antgo", "use_blob_urls": False},
        )
    for i, s in enumerate(samples):  # antgo_index = position in the selected file
        session.samples[i] = dict(s, _folder=str(root))
    session.count = len(samples)
    if not known:
        tasks = [
            {"data": {"image": ref(s["image_file"]), "antgo_index": i}}
            for i, s in enumerate(samples)
        ]
        for k in range(0, len(tasks), 500):
            api.call("POST", f"/api/projects/{project['id']}/import", tasks[k : k + 500])
        ctx.tag("antgo.label.imported", str(len(tasks)))
    elif ctx.step_tags().get("antgo.label.imported") is None:
        # killed between creating the project and importing: import into the same project
        present = int(api.call("GET", f"/api/projects/{known}").get("task_number") or 0)
        if present == 0:
            tasks = [
                {"data": {"image": ref(s["image_file"]), "antgo_index": i}}
                for i, s in enumerate(samples)
            ]
            api.call("POST", f"/api/projects/{known}/import", tasks)
        ctx.tag("antgo.label.imported", str(len(samples)))
    return session


def run(ctx, inputs: dict) -> dict:
    """Send, poll once, and when done write ``<workdir>/label/annotation.json`` (human GT)."""
    from antgo_mlflow.server.state import StepWaiting
    from antgo_mlflow.server.steps.gtfiles import read_abs, write_rel

    samples = read_abs(inputs["selected"])
    out = Path(ctx.workdir) / "label"
    if not samples:
        return {"human": write_rel(out, [], inputs["classes"]), "n_human": 0}
    api = _api(inputs.get("url") or "")
    try:
        session = _session(ctx, inputs, api, samples)
        done, total = session.progress()
    except ServiceError as exc:
        raise StepWaiting(f"Label Studio unreachable, waiting: {exc}") from None
    created = float(ctx.step_tags().get(CREATED_TAG) or time.time())
    timeout = inputs.get("timeout")
    if done < total:
        if timeout is None or time.time() - created < float(timeout):
            raise StepWaiting(
                f"waiting on {total - done} labelling tasks "
                f"(Label Studio project {session.project['id']}, {done}/{total} done)"
            )
        if inputs.get("policy", "partial") != "partial":
            raise ServiceError(
                f"labelling not finished after {timeout} s ({done}/{total} tasks, policy fail)"
            )
    labelled, classes = session.export_gt()
    ctx.echo(f"label: {len(labelled)}/{total} tasks labelled (project {session.project['id']})")
    return {
        "human": write_rel(out, labelled, classes),
        "n_human": len(labelled),
        "ls_project": session.project["id"],
        "_metrics": {"label/labels_added": len(labelled), "label/tasks": total},
    }
