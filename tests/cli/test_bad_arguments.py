"""Bad arguments to every `antgo` command: exit 2, one line, no traceback, nothing written.

The command list is read from the CLI itself (every group's subcommands, as `--help` lists them);
a command without a case here fails the coverage test, so a new command needs its bad inputs.
Each case runs in-process through `cli.main.main`. Inputs live in a module folder that must not
change; each case runs in an empty working folder that must stay empty; the MLflow store (one
project, shared) must not change either.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import zlib
from pathlib import Path

import pytest

from tests.tools._extract_data import make_image, run_inprocess

HUGE = "x" * 100_000
RO = "/sys/antgo-sweep/out"  # sysfs refuses new folders, even to root

# command -> bad argument lists ({name} placeholders are the fixture paths below)
CASES: dict[str, list[list[str]]] = {
    "tool extract/images": [
        [],
        ["--src={missing}", "--tgt={out}"],
        ["--src={file}", "--tgt={out}"],
        ["--src={raw}", "--tgt={under_file}"],
        ["--src={raw}", f"--tgt={RO}"],
        ["--src={raw}", "--tgt={raw}"],
        ["--src={raw}", "--tgt={out}", "--workers=-1"],
        ["--src={raw}", "--tgt={out}", "--workers=abc"],
        ["--src={raw}", "--tgt={out}", "--num=0"],
        ["--src={raw}", "--tgt={out}", "--max-size=-3"],
        ["--src={raw}", "--tgt={out}", "--ext=tiff"],
        ["--src={raw}", "--tgt={out}", "--bogus"],
    ],
    "tool extract/videos": [
        ["--src={missing}", "--tgt={out}"],
        ["--src={raw}", "--tgt={out}"],  # no video in it
        ["--src={raw}", "--tgt={out}", "--frame-rate=0"],
        ["--src={raw}", "--tgt={out}", "--frame-rate=nan"],
        ["--src={raw}", "--tgt={out}", "--frame-rate=-2"],
        ["--src={raw}", "--tgt={out}", "--ext=gif"],
        ["--src={raw}", "--tgt={out}", "--max-size=-1"],
    ],
    "tool extract/coco": [
        ["--src={missing}", "--tgt={out}"],
        ["--src={deep}", "--tgt={out}"],
        ["--src={gt}", "--tgt={out}"],  # a GT file is not COCO
        ["--src={coco}", "--tgt={out}", "--tags=person:x"],
        ["--src={coco}", "--tgt={out}", "--images={missing}"],
        ["--src={coco}", "--tgt={under_file}"],
        ["--src={coco}", "--tgt={out}", f"--tags={HUGE}"],
    ],
    "tool extract/crop": [
        ["--src={missing}", "--tgt={out}"],
        ["--src={deep}", "--tgt={out}"],
        ["--src={gt}", "--tgt={out}", "--ext-ratio=-1"],
        ["--src={gt}", "--tgt={out}", "--ext-ratio=nan"],
        ["--src={gt}", "--tgt={under_file}"],
        ["--src={gt}", f"--tgt={RO}"],
        ["--src={bomb}", "--tgt={out}"],  # its only image is a decompression bomb
        ["--src={outside}", "--tgt={out}"],
    ],
    "tool extract/samples": [
        ["--src={gt}", "--num=0"],
        ["--src={gt}", "--num=-1"],
        ["--src={gt}", "--num=abc"],
        ["--src={gt}", "--num=999"],
        ["--src={missing}", "--num=1"],
        ["--src={deep}", "--num=1"],
        ["--src={gt}", "--num=1", "--tgt={under_file}/x.json"],
    ],
    "tool package/tfrecord": [
        ["--src={gt}", "--tgt={out}", "--prefix=p", "--workers=-1"],
        ["--src={gt}", "--tgt={out}", "--prefix=p", "--num=0"],
        ["--src={gt}", "--tgt={out}", "--prefix=../p"],
        ["--src={gt}", "--tgt={out}", "--prefix="],
        ["--src={missing}", "--tgt={out}", "--prefix=p"],
        ["--src={gt}", "--tgt={file}", "--prefix=p"],
        ["--src={gt}", "--tgt={under_file}", "--prefix=p"],
        ["--src={gt}", f"--tgt={RO}", "--prefix=p"],
        ["--src={deep}", "--tgt={out}", "--prefix=p"],
        ["--src={outside}", "--tgt={out}", "--prefix=p"],
    ],
    "tool package/kv": [
        ["--src={gt}", "--tgt={out}", "--prefix=p", "--workers=-1"],
        ["--src={gt}", "--tgt={out}", "--prefix=p", "--num=-5"],
        ["--src={missing}", "--tgt={out}", "--prefix=p"],
        ["--src={gt}", "--tgt={under_file}", "--prefix=p"],
        ["--src={outside}", "--tgt={out}", "--prefix=p"],
    ],
    "tool browser/images": [
        ["--src={gt}", "--port=99999"],
        ["--src={gt}", "--port=0"],
        ["--src={gt}", "--port=-1"],
        ["--src={missing}", "--no-launch"],
        ["--src={gt}", "--feedback"],
        ["--src={gt}", "--tags=a", "--feedback", "--timeout=-1"],
        ["--src={gt}", "--white-users=ann:s3cret"],
        [],
    ],
    "tool filter/tags": [
        [],
        ["--src={gt}"],
        ["--src={missing}", "--tgt={file}"],
        ["--src={gt}", "--tgt={deep}"],
        ["--src={gt}", "--tgt={missing}"],
    ],
    "tool label/studio": [
        ["--src={gt}", "--tgt={out}"],
        ["--from", "--to", "--src={gt}", "--tgt={out}"],
        ["--from", "--src={gt}", "--tgt={out}"],  # a GT file, not a Label Studio export
        ["--from", "--src={deep}", "--tgt={out}"],
        ["--from", "--src={missing}", "--tgt={out}"],
        ["--to", "--src={gt}", "--tgt={file}"],
        ["--to", "--src={missing}", "--tgt={out}"],
        ["--from", "--src={ls_empty}", "--tgt={out}"],
    ],
    "tool label/merge": [
        ["--src={gt}", "--tgt={out}"],
        ["--src={gt},{missing}", "--tgt={out}"],
        ["--src={gt},{gt}", "--tgt={file}"],
        ["--src={gt},{deep}", "--tgt={out}"],
    ],
    "tool label/start": [
        ["--src={gt}", "--tgt={out}"],
        ["--src={gt}", "--tgt={out}", "--tags=Car:x"],
        ["--src={gt}", "--tgt={out}", "--tags=Car:0", "--port=70000"],
        ["--src={gt}", "--tgt={out}", "--tags=Car:0", "--type=CUBE"],
        ["--src={gt}", "--tgt={out}", "--tags=Car:0", "--white-users=ann:s3cret"],
        [
            "--src={gt}",
            "--tgt={out}",
            "--tags=Car:0",
            "--white-users=ann",
            "--white-users-file={world_readable}",
        ],  # fmt: skip
        ["--src={missing}", "--tgt={out}", "--tags=Car:0"],
        ["--src={outside}", "--tgt={out}", "--tags=Car:0"],
    ],
    "create mvp": [
        ["--tgt={under_file}"],
        [f"--tgt={RO}"],
        ["--name=../evil", "--tgt={out}"],
        ["--name=", "--tgt={out}"],
        [f"--name={HUGE}", "--tgt={out}"],
    ],
    "create project": [
        ["--name=bad/name"],
        ["--name=p1", "--metric=top_1:sideways"],
        [f"--name={HUGE}"],
        ["--name=sweep"],  # exists
    ],
    "create exp": [
        ["--project=nosuch", "--name=e1"],
        ["--project=sweep", "--name=../e"],
        ["--project=sweep"],
    ],
    "show project": [["--project=nosuch"], ["--project=bad/name"]],
    "show exp": [[], ["--project=nosuch"], ["--project=sweep", "--metric=top_1:up"]],
    "update project/label": [
        ["--project=sweep", "--config={missing}"],
        ["--project=sweep", "--config={bad_py}"],
        ["--project=sweep", "--name=x"],
        ["--project=nosuch", "--config={label_py}"],
    ],
    "update project/activelearning": [
        ["--project=sweep", "--config={al_password}"],
        ["--project=sweep", "--config={bad_py}"],
    ],
    "active rank": [
        [],
        ["--src={missing}", "--models={missing}", "--budget=1", "--tgt={out}"],
        ["--src={deep}", "--models={missing}", "--budget=1", "--tgt={out}"],
        ["--src={outside}", "--models={missing}", "--budget=1", "--tgt={out}"],
        ["--src={gt}", "--models={missing}", "--budget=1", "--tgt={out}"],  # a detection GT
        ["--src={gt}", "--models={missing}", "--budget=0", "--tgt={out}"],
        ["--src={gt}", "--models={missing}", "--budget=-2", "--tgt={out}"],
        ["--src={gt}", "--models={missing}", "--budget=abc", "--tgt={out}"],
        ["--src={gt}", "--models={missing}", "--budget=5", "--tgt={out}"],  # > the pool
        ["--src={gt}", "--budget=1", "--tgt={out}"],  # no model
        ["--src={gt}", "--models={missing}", "--budget=1", "--strategy=nosuch", "--tgt={out}"],
        [
            "--src={gt}",
            "--models={missing}",
            "--budget=1",
            "--strategy=disagreement",
            "--tgt={out}",
        ],
        ["--src={gt}", "--models={missing}", "--budget=1", "--pool-factor=nan", "--tgt={out}"],
        ["--src={gt}", "--models={missing}", "--budget=1", "--pool-factor=0.5", "--tgt={out}"],
        ["--src={gt}", "--models={missing}", "--budget=1", "--batch-size=0", "--tgt={out}"],
        ["--src={gt}", "--models={missing}", "--budget=1", "--tgt={under_file}"],
        ["--src={gt}", "--project=nosuch", "--budget=1", "--tgt={out}"],
    ],
    "active issues": [
        [],
        ["--src={missing}", "--models={missing}", "--tgt={out}"],
        ["--src={deep}", "--models={missing}", "--tgt={out}"],
        ["--src={gt}", "--tgt={out}"],  # neither models nor folds
        ["--src={gt}", "--models={missing}", "--tgt={out}"],
        ["--src={gt}", "--cv-folds=abc", "--tgt={out}"],
        ["--src={gt}", "--cv-folds=3", "--tgt={out}"],  # folds need a training config
        ["--src={gt}", "--cv-folds=1", "--config={label_py}", "--tgt={out}"],
        ["--src={gt}", "--models={missing}", "--cv-folds=3", "--config={label_py}", "--tgt={out}"],
        ["--src={gt}", "--models={missing}", "--epochs=0", "--tgt={out}"],
        ["--src={gt}", "--models={missing}", "--batch-size=-1", "--tgt={out}"],
    ],
    "hpo": [[], ["--config={missing}"]],
    "server": [
        ["--project=nosuch", "--once"],
        ["--project=sweep", "--once", "--interval=0"],
        ["--project=sweep", "--once", "--margin=abc"],
        ["--project=sweep", "--once", "--label-policy=bogus"],
        ["--project=sweep", "--once", "--retries=-1"],
        ["--project=sweep", "--once", "--threshold=nan"],
        ["--project=sweep", "--once", "--threshold=1.5"],
        ["--project=sweep", "--once", "--budget=0"],
        ["--project=sweep", "--once", "--label-timeout=-5"],
    ],  # merged from main without cases (the sweep needs one)
    "update project/submitter": [["--project=sweep", "--config={sub_bad}"]],
    "update project/semi": [["--project=sweep", "--name=dense"]],
    "update project/distillation": [["--project=nosuch", "--name=reviewkd"]],
    "promote": [
        ["--project=sweep", "--version=abc", "--role=product"],
        ["--project=sweep", "--version=1", "--role=owner"],
        ["--project=sweep", "--version=99", "--role=product"],
        ["--project=nosuch", "--version=1", "--role=product"],
        ["--project=sweep", "--version=1", "--role=product", f"--note={HUGE}"],
    ],
    "demote": [
        ["--project=sweep", "--role=expert"],
        ["--project=sweep", "--role=product", "--version=x"],
    ],
    "submitter ls": [["--ssh", "--docker"], ["--json", "--bogus"]],
    "submitter select": [["--ip=10.0.0.9"], ["--ip=10.0.0.9", "--ssh"], []],
    "submitter template": [
        ["--ssh", "--docker"],
        ["--ssh", "--tgt={under_file}"],
        ["--ssh", f"--tgt={RO}"],
    ],
    "submitter update": [
        ["--ssh"],
        ["--ssh", "--config={deep}"],
        ["--ssh", "--config={missing}"],
        ["--ssh", "--ip=10.0.0.9", "--port=99999"],
        ["--ssh", "--ip=10.0.0.9", "--port=abc"],
        ["--docker", "--ssh", "--config={missing}"],
    ],
    "train": [
        ["--project=sweep", "--exp=nosuch"],
        ["--project=sweep", "--exp=../e"],
        ["--project=nosuch", "--exp=e1"],
        ["--project=sweep", "--exp=e1", "-P", "novalue"],
        ["--project=sweep", "--exp=e1", "--cloud", "--ssh", "--docker"],
        [],
    ],
}
for _role in ("product", "expert", "baseline"):
    CASES[f"add {_role}"] = [
        ["--project=nosuch", "--exp=e1", "--id=abc"],
        ["--project=sweep", "--exp=nosuch", "--id=abc"],
        ["--project=sweep", "--exp=e1", "--id=not/an/id"],
        ["--project=sweep", "--exp=e1", "--id=abc", f"--note={HUGE}"],
    ]
    CASES[f"del {_role}"] = [["--project=nosuch"], ["--project=sweep", "--version=abc"]]
for _split in ("train/label", "train/unlabel", "val", "test"):
    CASES[f"add {_split}"] = [
        ["--project=sweep", "--address={missing}", "--tags=t"],
        ["--project=sweep", "--address={deep}", "--tags=t"],
        ["--project=sweep", "--address={gt}", "--tags=bad/tag"],
        ["--project=sweep", "--address={gt}", "--tags=t", "--num=-1"],
        ["--project=nosuch", "--address={gt}", "--tags=t"],
    ]
    CASES[f"del {_split}"] = [
        ["--project=sweep", "--tags=nosuch"],
        ["--project=nosuch", "--tags=t"],
    ]


def _bomb_png(path: Path) -> Path:
    """A PNG whose header claims 30000 x 30000 pixels: PIL refuses it as a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))  # fmt: skip
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Every input the cases need, made once; none of it may change."""
    from antgo_mlflow.gt import new_sample, save_gt

    root = tmp_path_factory.mktemp("sweep-inputs")
    make_image(root / "raw" / "a.png", 32, 24)
    make_image(root / "raw" / "b.png", 24, 32, seed=1)
    ds = root / "ds"
    make_image(ds / "a.png", 32, 24)
    box = {"bboxes": [[1, 1, 9, 9]], "labels": [0]}
    gt = save_gt(
        ds / "annotation.json", [new_sample(image_file="a.png", width=32, height=24, **box)]
    )
    (ds / "meta.json").write_text(json.dumps({"meta": {"category": ["a"]}}))
    bomb = root / "bomb"
    _bomb_png(bomb / "big.png")
    save_gt(bomb / "annotation.json", [new_sample(image_file="big.png", **box)])
    outside = root / "outside"
    save_gt(outside / "annotation.json", [new_sample(image_file="../raw/a.png", **box)])
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "afile").write_text("not a folder")
    coco = {"images": [{"id": 1, "file_name": "a.png"}], "annotations": [],
            "categories": [{"id": 1, "name": "person"}]}  # fmt: skip
    (ds / "coco.json").write_text(json.dumps(coco))
    (root / "ls_empty.json").write_text(json.dumps([{"id": 1, "data": {"image": "x.png"}}]))
    (root / "world_readable").write_text("ann:s3cret\n")
    (root / "world_readable").chmod(0o644)
    (root / "bad.py").write_text("this is not python(\n")
    (root / "label.py").write_text("type = 'RECT'\ncategory = ['a']\n")
    (root / "al_password.py").write_text("white_users = {'a@b.c': {'password': 's3cret'}}\n")
    (root / "sub_bad.py").write_text("method = 'ssh'\ntoken = 's3cret'\n")
    return {
        "raw": root / "raw", "ds": ds, "gt": gt, "bomb": bomb / "annotation.json",
        "outside": outside / "annotation.json", "deep": root / "deep.json",
        "file": root / "afile", "under_file": root / "afile" / "sub", "coco": ds / "coco.json",
        "ls_empty": root / "ls_empty.json", "world_readable": root / "world_readable",
        "bad_py": root / "bad.py", "label_py": root / "label.py",
        "al_password": root / "al_password.py", "sub_bad": root / "sub_bad.py",
        "missing": root / "missing", "root": root,
    }  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store with project 'sweep' (exp e1 recorded) shared by the MLflow cases."""
    path = tmp_path_factory.mktemp("sweep-store") / "mlflow.db"
    uri = f"sqlite:///{path}"
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        from antgo_mlflow.project.projects import create_project, get_client

        create_project(name="sweep")
        exp = get_client().get_experiment_by_name("sweep")
        get_client().set_experiment_tag(exp.experiment_id, "antgo.exp.e1", "{}")
    finally:
        if old is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old
    return uri


def _snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns, oct(p.stat().st_mode))
        for p in sorted(folder.rglob("*"))
    }


def _store_state(uri: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exps = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in exps]) if exps else []
    models = client.search_registered_models()
    return json.dumps(
        [[e.name, e.tags] for e in exps] + [len(runs)] + [[m.name, m.aliases] for m in models],
        sort_keys=True,
        default=str,
    )


def _commands() -> list[str]:
    """Every leaf command, as `antgo --help` and each group's `--help` list them."""
    import click

    from antgo_mlflow.cli.main import cli

    found = []

    def walk(group, prefix):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            cmd = group.get_command(ctx, name)
            if isinstance(cmd, click.Group):
                walk(cmd, f"{prefix}{name} ")
            else:
                found.append(f"{prefix}{name}")

    walk(cli, "")
    return sorted(found)


@pytest.mark.parametrize("command", _commands())
def test_an_unknown_flag_is_one_line_for_every_command(command, capsys):
    res = run_inprocess(capsys, *command.split(), "--no-such-flag=1")
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.code == 2 and len(lines) == 1 and "--no-such-flag" in lines[0], res


def test_every_command_has_bad_argument_cases():
    missing = [c for c in _commands() if c not in CASES]
    assert not missing, f"add bad-argument cases for: {missing}"


@pytest.mark.parametrize(
    "command, args",
    [(c, a) for c, cases in CASES.items() for a in cases],
    ids=[f"{c}:{' '.join(a)[:60]}" for c, cases in CASES.items() for a in cases],
)
def test_bad_arguments_fail_in_one_line_with_exit_2_and_write_nothing(
    command, args, inputs, store, tmp_path, monkeypatch, capsys
):
    if RO in " ".join(args) and not sys.platform.startswith("linux"):
        pytest.skip("needs Linux's sysfs as a read-only folder")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("ANTGO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ANTGO_CONFIG_DIR", str(tmp_path / "config"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    values = {k: str(v) for k, v in inputs.items()} | {"out": str(tmp_path / "out")}
    argv = command.split() + [a.format(**values) for a in args]
    before, store_before = _snapshot(inputs["root"]), _store_state(store)
    res = run_inprocess(capsys, *argv)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.code == 2, res
    assert len(lines) == 1 and lines[0].startswith("antgo: error: "), res
    assert "Traceback" not in res.stderr and len(lines[0]) < 1200
    assert "s3cret" not in res.stderr + res.stdout
    assert _snapshot(inputs["root"]) == before  # inputs untouched
    assert not (tmp_path / "out").exists() and list(work.iterdir()) == []
    assert not (tmp_path / "config").exists()  # per-user submitter settings untouched
    assert _store_state(store) == store_before
