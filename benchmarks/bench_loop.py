"""The automation server's loop on the digits, end to end: 40 human labels → 3 unlabelled batches.

A project starts from 40 human labels (4 per class of the digits' train split) and a product
trained on them; the other 1,219 train images arrive as 3 ``train/unlabel`` registrations, one
after another. A real ``antgo server`` (a subprocess) runs each iteration: the experts predict,
active learning (the project's default strategy) picks ``--budget`` images for a real Label Studio
that a *simulated annotator* (tests/server/annotator.py) answers from the hidden labels through
Label Studio's API, confident pseudo-labels (``--threshold``) are registered with the human
labels, the product's exp trains on everything registered, and the candidate is promoted only if
it beats the product on the fixed test split (359 images). In every iteration the script kills the
server with SIGKILL at a step drawn with ``--seed`` and restarts it (``--no-kill`` turns that off).

Printed per iteration: human labels spent, pseudo-labels accepted and their accuracy against the
hidden truth, candidate / product / champion top-1, promoted or not, wall time per step. Then two
baselines, the same exp config trained in the same run on the same human labels alone (no
pseudo-labels) and on as many labels drawn at random from the train split, and the duplicate check: step runs per (iteration, step), training runs per iteration,
Label Studio projects per iteration, registrations per tag.

The exp trains a fixed number of iterations (``--iters``, batch 32) whatever the amount of data,
so iterations with more data cost the same. Last line, for scripts:
    loop: iterations=3 human_labels=<n> product_top1=<x> supervised_same_labels_top1=<s>
          promotions=<k> duplicate_runs=<d> restarts=<r>

    python benchmarks/bench_loop.py              # ~15 min on 2 cores
    python benchmarks/bench_loop.py --quick      # 1 batch, budget 20, 100 iterations
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.server: the digits GT writer and the simulated annotator

STEPS = ("predict", "select", "label", "pack_register", "train", "evaluate_promote")
MLPROJECT = """name: {name}
entry_points:
  train:
    parameters:
      config: {{type: string, default: config.py}}
    command: python -m antgo_mlflow.entrypoints.train --config {{config}} --test false
"""


def exp_config(train_gts: list[Path], val: Path, iters: int) -> str:
    """The digits recipe reading GT folders, trained ``iters`` iterations of 32 images."""
    recipe = (REPO / "recipes" / "digits" / "config.py").read_text()
    recipe = recipe.replace("_digits = prepare_digits()", "")
    recipe = recipe.replace("from antgo_mlflow.data.sources.digits import prepare_digits", "")
    train = [str(p) for p in train_gts]
    recipe = recipe.replace(
        'type="TFDataset",\n        data_path_list=_digits.shard_paths("train")',
        f'type="GTDataset",\n        ann_file={train!r}',
    )
    for split in ("val", "test"):
        recipe = recipe.replace(
            f'type="TFDataset",\n        data_path_list=_digits.shard_paths("{split}")',
            f'type="GTDataset",\n        ann_file={str(val)!r}',
        )
    recipe = recipe.replace("samples_per_gpu=64", "samples_per_gpu=32")
    rounds = 4
    return recipe + (
        "\nmax_epochs = None\n"
        f"train_cfg = dict(type='IterBasedTrainLoop', max_iters={iters}, "
        f"val_interval={max(1, iters // rounds)})\n"
        f"checkpoint_config = dict(interval={rounds}, out_dir='./output/', log_artifacts='best')\n"
        "evaluation = dict(out_dir='./output/', interval=1, metric=dict(type='AccuracyEval'), "
        "save_best='top_1')\n"
    )


def make_exp(folder: Path, name: str, train_gts: list[Path], val: Path, iters: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLproject").write_text(MLPROJECT.format(name=name))
    (folder / "config.py").write_text(exp_config(train_gts, val, iters))


def split_data(work: Path, batches: int, seed: int) -> dict:
    """GT folders: 40 labelled (4 per class), val, test and ``batches`` unlabelled pools."""
    import numpy as np

    from antgo_mlflow.data.sources.digits import _load_source, split_indices
    from tests.server.conftest import digits_gt

    targets = _load_source()[2]
    splits = split_indices(targets)
    rng = random.Random(seed)
    train = list(splits["train"])
    rng.shuffle(train)
    labelled = [i for c in range(10) for i in [j for j in train if targets[j] == c][:4]]
    rest = [i for i in train if i not in set(labelled)]
    pools = [list(p) for p in np.array_split(np.array(rest), batches)]
    return {
        "labelled": digits_gt(work / "data" / "labelled", labelled),
        "val": digits_gt(work / "data" / "val", splits["val"]),
        "test": digits_gt(work / "data" / "test", splits["test"]),
        "pools": [
            digits_gt(work / "data" / f"batch{k + 1}", [int(i) for i in p], labelled=False)
            for k, p in enumerate(pools)
        ],
        "n_pool": len(rest),
        "train": [int(i) for i in train],
    }


class Server:
    """``antgo server`` as a subprocess, restartable; its output appended to ``log``."""

    def __init__(self, argv: list[str], env: dict, cwd: Path, log: Path):
        self.argv, self.env, self.cwd, self.log, self.proc = argv, env, cwd, log, None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> int:
        if not self.alive():
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=120)

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def current_step(client, experiment_id: str, iteration: int) -> str | None:
    """The step a RUNNING step run of ``iteration`` is at (None between steps)."""
    from antgo_mlflow.server import state

    runs = state._search(
        client, experiment_id, {state.KIND: "step", state.ITERATION: str(iteration)}
    )
    running = [r for r in runs if r.info.status == "RUNNING"]
    return running[0].data.tags.get(state.STEP) if running else None


def iteration_state(client, experiment_id: str, iteration: int) -> str | None:
    from antgo_mlflow.server import state

    for run in state.pipeline_runs(client, experiment_id):
        if run.data.tags.get(state.ITERATION) == str(iteration):
            return run.info.status
    return None


def top1(uri: str, test: Path) -> float:
    from antgo_mlflow.server.steps.evaluate_promote import top1 as evaluate

    return evaluate(uri, str(test))


def pseudo_accuracy(address: str) -> tuple[int, float]:
    """(size, accuracy against the hidden labels) of a registered pseudo-label GT."""
    from antgo_mlflow.gt import load_gt
    from tests.server.annotator import truth_of_image

    samples = load_gt(address, inside=False)
    if not samples:
        return 0, float("nan")
    right = sum(int(s["image_label"]) == truth_of_image(s["image_file"]) for s in samples)
    return len(samples), right / len(samples)


def duplicates(client, experiment_id: str, ls_projects: int, iterations: int) -> dict:
    """Extra runs a restart could have made: step runs, training runs, LS projects, pipelines."""
    from antgo_mlflow.server import state
    from antgo_mlflow.server.steps.train import STEP_RUN_TAG

    pipes = state.pipeline_runs(client, experiment_id)
    extra_steps = extra_train = 0
    for pipe in pipes:
        steps = state.step_runs(client, experiment_id, pipe.info.run_id)
        counts = Counter(r.data.tags[state.STEP] for r in steps)
        extra_steps += sum(n - 1 for n in counts.values())
        train = [r for r in steps if r.data.tags[state.STEP] == "train"]
        for step in train:
            runs = client.search_runs(
                [experiment_id], f"tags.`{STEP_RUN_TAG}` = '{step.info.run_id}'"
            )
            extra_train += max(0, len(runs) - 1)
    return {
        "pipelines": max(0, len(pipes) - iterations),
        "step_runs": extra_steps,
        "training_runs": extra_train,
        "label_studio_projects": max(0, ls_projects - iterations),
    }


def step_times(client, experiment_id: str, iteration: int) -> dict[str, float]:
    """Wall seconds of each step run of ``iteration`` (start to end, restarts included)."""
    from antgo_mlflow.server import state

    runs = state._search(
        client, experiment_id, {state.KIND: "step", state.ITERATION: str(iteration)}
    )
    return {
        r.data.tags[state.STEP]: ((r.info.end_time or r.info.start_time) - r.info.start_time) / 1e3
        for r in runs
    }


def run(args) -> int:
    from mlflow import MlflowClient

    from antgo_mlflow.project import experiments
    from antgo_mlflow.project.data_registry import add_data, list_data
    from antgo_mlflow.project.projects import create_project, get_project
    from antgo_mlflow.project.roles import model_uri, promote, register_run
    from antgo_mlflow.review.labelling import Api, LabelStudioServer, label_studio_venv
    from antgo_mlflow.server import state
    from tests.conftest import free_port
    from tests.server.annotator import Annotator

    if label_studio_venv() is None:
        print("bench_loop: Label Studio is not installed (bash scripts/install_label_studio.sh)")
        return 2
    work = Path(args.work or tempfile.mkdtemp(prefix="antgo-bench-loop-")).absolute()
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    os.environ["ANTGO_PROGRESS"] = "0"
    client = MlflowClient()
    t0 = time.time()
    data = split_data(work, args.batches, args.seed)
    project, baseline_project = "digits-loop", "digits-loop-baseline"
    create_project(name=project, metric="top_1", auto=True)
    make_exp(work / "e1", "e1", [data["labelled"]], data["val"], args.iters)
    first = experiments.train(project, "e1")["run_id"]
    exp = get_project(project, client)
    version = register_run(client, project, exp, first).version
    promote(project, version, "product", note="initial: 40 human labels")
    promote(project, version, "expert", note="initial: 40 human labels")
    add_data(project, "test", str(data["test"]), "fixed")
    initial = top1(model_uri(project, "production"), data["test"])
    print(f"setup: 40 human labels, product top-1 {initial:.4f} ({time.time() - t0:.0f} s)")

    ls = LabelStudioServer(work / "ls", free_port(), work / "server").start(echo=lambda _: None)
    api = Api(ls.url, ls.token)
    annotator = Annotator(api, mistakes=args.mistakes, seed=args.seed, enabled=True)
    annotator.start()
    env = dict(os.environ, LABEL_STUDIO_API_KEY=ls.token)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    argv = [sys.executable, "-m", "antgo_mlflow", "server", f"--project={project}",
            f"--workdir={work / 'server'}", f"--budget={args.budget}",
            f"--threshold={args.threshold}", "--interval=1", f"--label-studio={ls.url}",
            f"--margin={args.margin}", f"--stage={args.stage}"]  # fmt: skip
    server = Server(argv, env, work, work / "server.log")
    rng = random.Random(args.seed)
    rows, restarts, champions = [], 0, [initial]
    try:
        server.start()
        for k in range(1, args.batches + 1):
            add_data(project, "train/unlabel", str(data["pools"][k - 1]), f"batch{k}")
            target = rng.choice(STEPS) if args.kill else None
            killed_at = None
            deadline = time.time() + args.iteration_timeout
            while iteration_state(client, exp.experiment_id, k) != "FINISHED":
                if time.time() > deadline or iteration_state(client, exp.experiment_id, k) in (
                    "FAILED",
                    "KILLED",
                ):
                    raise RuntimeError(
                        f"iteration {k} did not finish; server log:\n{server.tail()}"
                    )
                if not server.alive():
                    raise RuntimeError(f"the server exited; its log:\n{server.tail()}")
                step = current_step(client, exp.experiment_id, k)
                if target and killed_at is None and step is not None:
                    if STEPS.index(step) >= STEPS.index(target):
                        time.sleep(rng.uniform(0.0, 2.0))  # somewhere inside the step
                        server.kill9()
                        killed_at, restarts = step, restarts + 1
                        server.start()
                time.sleep(0.3)
            pipe = next(
                r
                for r in state.pipeline_runs(client, exp.experiment_id)
                if r.data.tags.get(state.ITERATION) == str(k)
            )
            m = pipe.data.metrics
            pseudo = next(
                (r for r in list_data(project)["train/label"] if r["tag"] == f"pseudo-{k}"), None
            )
            n_pseudo, pseudo_acc = (
                pseudo_accuracy(pseudo["address"]) if pseudo else (0, float("nan"))
            )
            champion = top1(model_uri(project, "champion"), data["test"])
            champions.append(champion)
            rows.append(
                {
                    "iteration": k,
                    "human": int(m.get("labels_added", 0)),
                    "pseudo": n_pseudo,
                    "pseudo_acc": pseudo_acc,
                    "candidate": m.get("candidate_top1"),
                    "product_before": m.get("product_top1"),
                    "promoted": bool(m.get("promoted")),
                    "champion": champion,
                    "killed_at": killed_at or "-",
                    "steps": step_times(client, exp.experiment_id, k),
                }
            )
            print(
                f"iteration {k}: {rows[-1]['human']} human, {n_pseudo} pseudo "
                f"(accuracy {pseudo_acc:.3f}), candidate {rows[-1]['candidate']:.4f}, "
                f"promoted {rows[-1]['promoted']}, killed at {rows[-1]['killed_at']} "
                f"({time.time() - t0:.0f} s)",
                flush=True,
            )
        rc = server.stop()
        if rc != 0:
            print(f"bench_loop: the server exited {rc} on SIGTERM")
    finally:
        annotator.stop.set()
        if server.alive():
            server.kill9()
        ls_projects = len(api.call("GET", "/api/projects")["results"])
        ls.stop()

    product = top1(model_uri(project, "production"), data["test"])
    human_gts = [data["labelled"]] + [
        Path(r["address"])
        for r in list_data(project)["train/label"]
        if r["tag"].startswith("human-")
    ]
    human_labels = 40 + sum(r["human"] for r in rows)
    create_project(name=baseline_project, metric="top_1")
    make_exp(work / "baseline", "baseline", human_gts, data["val"], args.iters)
    base_run = experiments.train(baseline_project, "baseline")["run_id"]
    supervised = top1(f"runs:/{base_run}/model", data["test"])
    # the same number of labels drawn at random from the train split: what active learning and
    # pseudo-labels together are worth
    from tests.server.conftest import digits_gt

    drawn = random.Random(args.seed + 1000).sample(data["train"], human_labels)
    make_exp(
        work / "random",
        "random",
        [digits_gt(work / "data" / "random", drawn)],
        data["val"],
        args.iters,
    )
    random_run = experiments.train(baseline_project, "random")["run_id"]
    random_labels = top1(f"runs:/{random_run}/model", data["test"])
    dup = duplicates(client, exp.experiment_id, ls_projects, len(rows))
    regs = Counter(r["tag"] for r in list_data(project)["train/label"])
    dup["registrations"] = sum(n - 1 for n in regs.values())

    print()
    head = (
        f"{'iter':>4} {'human':>5} {'pseudo':>6} {'ps.acc':>6} {'cand':>6} {'prod<':>6} {'promo':>5} {'champ':>6} {'killed at':>16} "
        + " ".join(f"{s[:8]:>8}" for s in STEPS)
    )
    print(head)
    for r in rows:
        before = f"{r['product_before']:.4f}" if r["product_before"] is not None else "-"
        print(
            f"{r['iteration']:>4} {r['human']:>5} {r['pseudo']:>6} {r['pseudo_acc']:>6.3f} "
            f"{r['candidate']:>6.4f} {before:>6} {str(r['promoted']):>5} {r['champion']:>6.4f} "
            f"{r['killed_at']:>16} " + " ".join(f"{r['steps'].get(s, 0):>7.1f}s" for s in STEPS)
        )
    monotone = all(b >= a for a, b in zip(champions, champions[1:]))
    print(
        f"\nproduct top-1 {product:.4f} with {human_labels} human labels (initial {initial:.4f}); "
        f"supervised on the same {human_labels} human labels alone {supervised:.4f} "
        f"({(product - supervised) * 100:+.1f} points); supervised on {human_labels} random labels "
        f"{random_labels:.4f} ({(product - random_labels) * 100:+.1f} points); champion never worse: {monotone} "
        f"({' → '.join(f'{c:.4f}' for c in champions)}); duplicates {json.dumps(dup)}; "
        f"annotator answered {annotator.answered} ({annotator.wrong} wrong on purpose); "
        f"total {time.time() - t0:.0f} s; load {os.getloadavg()[0]:.1f}; work {work}"
    )
    print(
        f"loop: iterations={len(rows)} human_labels={human_labels} product_top1={product:.4f} "
        f"supervised_same_labels_top1={supervised:.4f} "
        f"promotions={sum(r['promoted'] for r in rows)} duplicate_runs={sum(dup.values())} "
        f"restarts={restarts}"
    )
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", help="working folder (default: a new temp folder, kept)")
    p.add_argument("--batches", type=int, default=3)
    p.add_argument("--budget", type=int, default=60, help="human labels per iteration")
    p.add_argument("--threshold", type=float, default=0.95, help="pseudo-label confidence")
    p.add_argument("--margin", type=float, default=0.0)
    p.add_argument(
        "--stage", default="auto", choices=("auto", "supervised", "semi", "distillation")
    )
    p.add_argument("--iters", type=int, default=400, help="training iterations per model")
    p.add_argument("--mistakes", type=float, default=0.0, help="annotator error rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-kill", dest="kill", action="store_false")
    p.add_argument("--iteration-timeout", type=float, default=1200)
    p.add_argument("--quick", action="store_true", help="1 batch, budget 20, 100 iterations")
    args = p.parse_args(argv)
    if args.quick:
        args.batches, args.budget, args.iters = 1, 20, 100
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
