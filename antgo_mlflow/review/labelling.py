"""Labelling on Label Studio: start the server, create the project, send images, wait, export GT.

Label Studio runs as its own process from its own virtualenv (made by
``scripts/install_label_studio.sh``; its pins clash with ours), bound to 127.0.0.1, and is driven
through its REST API with ``urllib``. Images are served by Label Studio's local-files storage
(no copies). Annotator accounts (``--white-users``) are created through Label Studio's own
signup form, so its authentication is real; passwords are never printed or logged, and the
admin credentials live in ``<data dir>/antgo-admin.json`` (mode 0600).

Used by ``antgo tool label/start`` and ``InteractContext.activelearning`` (same code).
"""

from __future__ import annotations

import contextlib
import html
import http.cookiejar
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from antgo_mlflow import env
from antgo_mlflow.errors import DataError, ServiceError, UsageError
from antgo_mlflow.review.browser import free_port

VENV_ENV = env.ANTGO_LABEL_STUDIO_VENV
INSTALL_HINT = "bash scripts/install_label_studio.sh (Label Studio in its own virtualenv)"
LABEL_TYPES = ("RECT", "POLYGON", "POINT", "CLASS")


def label_studio_venv() -> Path | None:
    """The Label Studio virtualenv: $ANTGO_LABEL_STUDIO_VENV, else ~/.cache/antgo-mlflow/label-studio-venv."""
    value = env.text(VENV_ENV)
    venv = (
        Path(value).expanduser()
        if value
        else Path.home() / ".cache" / "antgo-mlflow" / "label-studio-venv"
    )
    return venv if (venv / "bin" / "label-studio").exists() else None


def label_config(tags: dict[str, int], label_type: str) -> str:
    """The Label Studio labelling XML for ``label_type`` with the classes of ``tags``."""
    if label_type not in LABEL_TYPES:
        raise UsageError(f"--type {label_type}: expected one of {', '.join(LABEL_TYPES)}")
    names = [n for n, _ in sorted(tags.items(), key=lambda kv: kv[1])]
    image = '<Image name="image" value="$image" zoom="true"/>'
    if label_type == "CLASS":
        items = "".join(f'<Choice value="{html.escape(n, quote=True)}"/>' for n in names)
        return f'<View>{image}<Choices name="choice" toName="image" choice="single">{items}</Choices></View>'
    tag = {"RECT": "RectangleLabels", "POLYGON": "PolygonLabels", "POINT": "KeypointLabels"}[
        label_type
    ]
    items = "".join(f'<Label value="{html.escape(n, quote=True)}"/>' for n in names)
    return f'<View>{image}<{tag} name="label" toName="image">{items}</{tag}></View>'


def parse_white_users(text: str | dict | None) -> dict[str, str]:
    """``"name:password,..."`` (or a dict) -> ``{email: password}``; names without @ get @antgo.local."""
    if not text:
        return {}
    pairs = (
        text.items()
        if isinstance(text, dict)
        else (p.split(":", 1) for p in text.split(",") if p.strip())
    )
    out = {}
    for pair in pairs:
        pair = list(pair)
        if len(pair) != 2 or not pair[0].strip() or not pair[1]:
            raise UsageError("--white-users: expected name:password pairs separated by ','")
        name = pair[0].strip()
        out[name if "@" in name else f"{name}@antgo.local"] = pair[1]
    return out


class Api:
    """A tiny Label Studio REST client (token auth)."""

    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                text = resp.read()
        except urllib.error.HTTPError as exc:
            detail = " ".join(exc.read().decode("utf-8", "replace").split())[:600]
            raise ServiceError(f"Label Studio {method} {path}: HTTP {exc.code} {detail}") from None
        except OSError as exc:
            raise ServiceError(f"Label Studio at {self.url} is unreachable: {exc}") from None
        return json.loads(text) if text.strip() else None


def _form_session(url: str, path: str, fields: dict[str, str]) -> tuple[Any, str]:
    """POST a Django form (with its CSRF token) as a browser would; returns (opener, final URL)."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(url + path, timeout=60) as resp:
        resp.read()
    csrf = next((c.value for c in jar if c.name == "csrftoken"), "")
    data = urllib.parse.urlencode({"csrfmiddlewaretoken": csrf, **fields}).encode()
    req = urllib.request.Request(
        url + path, data=data, method="POST", headers={"Referer": url + path}
    )
    with opener.open(req, timeout=60) as resp:
        resp.read()
        return opener, resp.url


def create_account(url: str, email: str, password: str) -> bool:
    """Sign up ``email`` through Label Studio's form; False if it already exists (password unchanged)."""
    try:
        _, final = _form_session(url, "/user/signup/", {"email": email, "password": password})
    except OSError as exc:
        raise ServiceError(
            f"Label Studio signup for {email} failed: {type(exc).__name__}"
        ) from None
    if "/user/signup" not in urllib.parse.urlparse(final).path:
        return True
    try:
        login_token(url, email, password)
        return False  # it exists already and the password matches
    except ServiceError:
        raise ServiceError(
            f"--white-users: Label Studio refused the account {email} (it exists with another password, "
            "or the password is too short: use at least 8 characters)"
        ) from None


def login_token(url: str, email: str, password: str) -> str:
    """Log in through the form (as an annotator does) and return the user's API token."""
    opener, final = _form_session(url, "/user/login/", {"email": email, "password": password})
    if "/user/login" in urllib.parse.urlparse(final).path:
        raise ServiceError(f"Label Studio login for {email} failed")
    with opener.open(url + "/api/current-user/token", timeout=60) as resp:
        return json.loads(resp.read())["token"]


class LabelStudioServer:
    """A Label Studio process on 127.0.0.1 with its data in ``data_dir`` (kept between runs)."""

    def __init__(self, data_dir: str | os.PathLike, port: int, document_root: str | os.PathLike):
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.document_root = Path(document_root).resolve()
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None
        self.token = ""

    def _credentials(self) -> dict[str, str]:
        path = self.data_dir / "antgo-admin.json"
        if path.exists():
            return json.loads(path.read_text())
        creds = {
            "email": "antgo-admin@antgo.local",
            "password": secrets.token_urlsafe(18),
            "token": secrets.token_hex(20),
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(creds, fh)
        return creds

    def start(self, timeout: float = 300, echo: Callable[[str], Any] = print) -> LabelStudioServer:
        """Start the server and wait for ``/health``; raises ServiceError with the log tail on failure."""
        from antgo_mlflow.review.browser import port_is_free

        venv = label_studio_venv()
        if venv is None:
            raise ServiceError(f"Label Studio is not installed: {INSTALL_HINT} or set {VENV_ENV}")
        if not port_is_free(self.port):
            raise ServiceError(
                f"port {self.port} is in use on 127.0.0.1 (pick another one with --port)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        template = venv / "antgo-template" / "label_studio.sqlite3"
        db = self.data_dir / "label_studio.sqlite3"
        if template.exists() and not db.exists():
            shutil.copyfile(template, db)  # migrated empty database: start in seconds
        creds = self._credentials()
        self.token = creds["token"]
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "LABEL_STUDIO_USERNAME": creds["email"],
            "LABEL_STUDIO_PASSWORD": creds["password"],
            "LABEL_STUDIO_USER_TOKEN": creds["token"],
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LOCAL_FILES_SERVING_ENABLED": "true",
            "LOCAL_FILES_DOCUMENT_ROOT": str(self.document_root),
            "LATEST_VERSION_CHECK": "false",  # offline: no PyPI version check on start
        }
        log = open(self.data_dir / "label-studio.log", "ab")  # noqa: SIM115 - kept open for the child
        self.proc = subprocess.Popen(
            [
                str(venv / "bin" / "label-studio"),
                "start",
                "--no-browser",
                "--internal-host",
                "127.0.0.1",
                "-p",
                str(self.port),
                "--enable-legacy-api-token",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # one process group: stop() ends it and its children
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=3) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = (self.data_dir / "label-studio.log").read_text(errors="replace")[-300:]
                self.stop()
                raise ServiceError(
                    f"Label Studio did not start on port {self.port}: {' '.join(tail.split())}"
                )
            time.sleep(1)
        echo(f"Label Studio: {self.url}/")
        from antgo_mlflow.review.browser import tunnel_hint

        echo(f"remote: {tunnel_hint(self.port)}  (then open {self.url}/)")
        return self

    def stop(self) -> None:
        """Stop the server process group."""
        import signal

        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.proc = None


class LabelSession:
    """One Label Studio project: send images, wait for the annotations, export them as GT."""

    def __init__(self, api: Api, project: dict, tags: dict[str, int], root: Path, server, echo):
        self.api = api
        self.project = project
        self.tags = tags
        self.root = root
        self.server = server
        self.echo = echo
        self.samples: dict[int, dict] = {}
        self.count = 0

    @classmethod
    def open(
        cls,
        name: str,
        tags: dict[str, int],
        label_type: str,
        folder: str | os.PathLike,
        white_users: dict[str, str] | str | None = None,
        echo: Callable[[str], Any] = print,
        url: str | None = None,
        api_key: str | None = None,
        port: int | None = None,
        data_dir: str | os.PathLike | None = None,
        document_root: str | os.PathLike | None = None,
    ) -> LabelSession:
        """Start Label Studio (or use ``url`` + ``api_key``) and create project ``name``.

        Images must live under ``document_root`` (default: ``folder``); it becomes a Label Studio
        local-files storage, so the server's LOCAL_FILES_DOCUMENT_ROOT is its parent (with ``url``,
        configure that server the same way).
        """
        folder = Path(folder).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        root = Path(document_root or folder).resolve()
        server = None
        if url:
            token = api_key or os.environ.get("LABEL_STUDIO_API_KEY")
            if not token:
                raise UsageError("--url needs an API token in LABEL_STUDIO_API_KEY")
            api = Api(url, token)
        else:
            # Label Studio serves local files only from a strict subfolder of its document root.
            server = LabelStudioServer(
                data_dir or folder / ".label-studio", port or free_port(), root.parent
            )
            server.start(echo=echo)
            api = Api(server.url, server.token)
        try:
            for email, password in parse_white_users(white_users).items():
                created = create_account(api.url, email, password)
                echo(f"annotator {email}: {'created' if created else 'exists'}")
            config = label_config(tags, label_type)
            project = api.call(
                "POST", "/api/projects", {"title": name[:50], "label_config": config}
            )
            api.call(
                "POST",
                "/api/storages/localfiles",
                {
                    "project": project["id"],
                    "path": str(root),
                    "title": "antgo",
                    "use_blob_urls": False,
                },
            )
        except BaseException:
            if server is not None:
                server.stop()
            raise
        echo(f"project {project['id']} {name!r}: {api.url}/projects/{project['id']}/data")
        return cls(api, project, tags, root, server, echo)

    def _image_ref(self, path: Path) -> str:
        try:
            path.resolve().relative_to(self.root)
            rel = path.resolve().relative_to(self.root.parent)
        except ValueError:
            raise DataError(f"{path}: outside the Label Studio document root {self.root}") from None
        return "/data/local-files/?d=" + urllib.parse.quote(str(rel))

    def add_samples(self, samples: list[dict], folder: Path) -> None:
        """Import GT samples (images resolved against ``folder``) as tasks."""
        tasks = []
        for s in samples:
            if not s.get("image_file"):
                raise DataError(
                    f"sample {self.count}: label/start needs local images ('image_file')"
                )
            path = folder / s["image_file"]
            if not path.exists():
                raise DataError(f"{path}: image not found")
            tasks.append({"data": {"image": self._image_ref(path), "antgo_index": self.count}})
            self.samples[self.count] = dict(s, _folder=str(folder))
            self.count += 1
        for k in range(0, len(tasks), 500):
            self.api.call("POST", f"/api/projects/{self.project['id']}/import", tasks[k : k + 500])

    def add_gt(self, json_file: str | os.PathLike) -> None:
        """Import every sample of a GT file."""
        from antgo_mlflow.gt import load_gt

        path = Path(json_file)
        self.add_samples(load_gt(path), path if path.is_dir() else path.parent)

    def add_image(self, rel: str, width: int, height: int, meta: dict | None = None) -> None:
        """Import one image (``rel`` under the session folder) as a task."""
        from antgo_mlflow.gt import new_sample

        sample = new_sample(image_file=rel, width=width, height=height, **(meta or {}))
        self.add_samples([sample], self.root)

    def progress(self) -> tuple[int, int]:
        """(tasks with an annotation, tasks)."""
        p = self.api.call("GET", f"/api/projects/{self.project['id']}")
        return int(p.get("num_tasks_with_annotations") or 0), int(p.get("task_number") or 0)

    def wait(
        self, timeout: float | None = None, ignore_incomplete: bool = False, poll: float = 2.0
    ) -> bool:
        """Block until every task has an annotation; True if complete."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last = None
        while True:
            done, total = self.progress()
            if (done, total) != last:
                self.echo(f"labelled {done}/{total}")
                last = (done, total)
            if done >= total:
                return True
            if deadline is not None and time.monotonic() > deadline:
                if ignore_incomplete:
                    return False
                raise ServiceError(
                    f"labelling not finished after {timeout:g} s ({done}/{total} tasks); "
                    "re-run, or pass --ignore-incomplete"
                )
            time.sleep(poll)

    def export_gt(self) -> tuple[list[dict], list[str]]:
        """The annotated tasks as GT samples (original sample fields kept) + class names."""
        from antgo_mlflow.tools.label_studio import _Classes, studio_task_to_gt

        tasks = self.api.call("GET", f"/api/projects/{self.project['id']}/export?exportType=JSON")
        classes = _Classes(dict(self.tags), "")
        out = []
        for task in sorted(tasks, key=lambda t: t.get("data", {}).get("antgo_index", 0)):
            labelled = studio_task_to_gt(task, classes, where=f"project {self.project['id']}: ")
            if labelled is None:
                continue
            original = dict(self.samples.get(task["data"].get("antgo_index"), {}))
            folder = Path(original.pop("_folder", self.root))
            sample = dict(original)
            # the annotators' instances replace the old ones: drop per-instance fields they lack
            for field in ("box_visibility", "segments", "joints2d", "joints_vis"):
                if field in sample:
                    sample[field] = []
            for field in (
                "bboxes",
                "labels",
                "segments",
                "joints2d",
                "joints_vis",
                "image_label",
                "image_label_name",
            ):
                if field in labelled:
                    sample[field] = labelled[field]
            if not sample.get("image_file"):
                sample["image_file"] = os.path.relpath(
                    self.root.parent / labelled["image_file"], folder
                )
            sample["width"] = sample.get("width") or labelled["width"]
            sample["height"] = sample.get("height") or labelled["height"]
            out.append(sample)
        return out, classes.names()

    def close(self) -> None:
        """Stop the server if this session started it."""
        if self.server is not None:
            self.server.stop()
            self.server = None


def label_start(
    src: str,
    tgt: str,
    tags: str | dict[str, int],
    label_type: str = "RECT",
    white_users: str | dict[str, str] | None = None,
    port: int | None = None,
    url: str | None = None,
    ignore_incomplete: bool = False,
    timeout: float | None = None,
    echo: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """``label/start``: label the images of ``src`` in Label Studio; write ``<name>_label.json`` + meta."""
    from antgo_mlflow.gt import load_gt, read_meta, save_gt, write_meta
    from antgo_mlflow.gt.meta import default_meta
    from antgo_mlflow.review.browser import sigterm_as_exception
    from antgo_mlflow.tools.tags import parse_tags

    mapping = parse_tags(tags)
    if not mapping:
        raise UsageError("--tags is required, e.g. Car:0,Train:1")
    label_config(mapping, label_type)  # validates --type before anything starts
    parse_white_users(white_users)
    path = Path(src)
    samples = load_gt(path)
    folder = (path if path.is_dir() else path.parent).resolve()
    out_dir = Path(tgt)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--tgt {tgt}: must be a folder")
    name = "annotation" if path.is_dir() else path.stem
    session = None
    with sigterm_as_exception():
        try:
            session = LabelSession.open(
                f"antgo {name}",
                mapping,
                label_type,
                out_dir.resolve(),
                white_users=white_users,
                echo=echo,
                url=url,
                port=port,
                data_dir=out_dir.resolve() / ".label-studio",
                document_root=_common_root(folder, samples),
            )
            session.add_samples(samples, folder)
            session.wait(timeout=timeout, ignore_incomplete=ignore_incomplete)
            labelled, classes = session.export_gt()
        finally:
            if session is not None:
                session.close()
    for s in labelled:
        s["image_file"] = os.path.relpath(folder / s["image_file"], out_dir.resolve())
    out = out_dir / f"{name}_label.json"
    save_gt(out, labelled)
    meta = read_meta(folder) or default_meta()
    meta["extent"] = {"total": len(labelled)}
    meta.setdefault("meta", {})["category"] = classes
    write_meta(out_dir, meta)
    return {"gt": str(out), "samples": len(labelled), "total": len(samples)}


def _common_root(folder: Path, samples: list[dict]) -> Path:
    paths = [str(folder)] + [
        str((folder / s["image_file"]).resolve().parent) for s in samples if s.get("image_file")
    ]
    return Path(os.path.commonpath(paths))
