"""HPO on the digits recipe: TPE + median pruning vs random search, and 2 workers vs 1.

Every study is a real `antgo hpo` process on a real PostgreSQL storage (a throw-away server) with
the digits recipe (recipes/digits/config.py: WideResNet, AdamW + one-cycle), validated every epoch.

- Space: ``optimizer.lr`` (log 1e-4..0.1), ``optimizer.weight_decay`` (log 1e-6..0.3),
  ``model.backbone.widen_factor`` (1..2, which also sets a trial's cost). The learning rate alone
  moves the objective from 1.7 to 0.02.
- Objective: validation NLL (mean -log p(true class) on the 179-image held-out val split), lower
  is better. Top-1 on that split saturates at 1.0 for most good configs (ties decide nothing);
  the NLL keeps ranking them. Top-1 of each best trial is printed too.
- Budget: 16 trials of at most 6 epochs per study, 3 sampler seeds; training itself is seeded
  (the recipe's seed 0): a configuration scores the same in every single-process study.
- Arms: random search without pruning; TPE (4 random start-up trials, multivariate) without
  pruning; TPE + median pruner (4 start-up trials, pruning from epoch 3, after the one-cycle
  learning-rate peak). The TPE-alone arm separates what the sampler and the pruner each do.
- "Reaches random's best": the target is the median over seeds of random search's best NLL (one
  lucky random run does not set the bar); for each seed, the wall time from the start of the
  study until one of its trials finished at or below the target (inf if never);
  ratio = median over seeds of that time / median over seeds of random search's wall time.
  The same ratio in compute (epochs x widen_factor trained) is printed too: on a shared machine
  whose load changes between studies it is the figure that stays comparable.
- Workers: the 16 configurations of random seed 0 are queued into two new studies, one run by
  1 process (2 torch threads), then one by 2 worker processes (1 torch thread each), back to
  back so both see the same machine (random seed 0 itself ran much earlier: a load change in
  between would move the ratio). speedup = 1-worker wall / 2-worker wall.

Pieces: the studies (each arm x 3 seeds, then the 1- and 2-worker ones) run one after another, and a
long study runs in pieces (``--piece-seconds``: ``antgo hpo --timeout`` on the continued study),
so a shared machine's CPU lock is held a few minutes at a time. State (PostgreSQL data, MLflow
store, ``state.json``) lives in ``--state``; each call runs ``--pieces`` pieces and the table is
printed once every study is done. A study's clock is the sum of its pieces' walls (process start
included: every piece pays it), a trial's time its piece's offset plus its completion time.

Run under the CPU lock; the last line is for scripts:
    flock /work/wt/cpu.lock .venv/bin/python benchmarks/bench_hpo.py [--quick]   # all at once
    flock /work/wt/cpu.lock .venv/bin/python benchmarks/bench_hpo.py --pieces 1 --piece-seconds 420
    ... hpo: random_best=<a> tpe_best=<b> tpe_time_to_random_best_ratio=<r> workers2_speedup=<s>
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from antgo_mlflow.engine.metrics import ClassificationMetric, as_arrays
from antgo_mlflow.registry import METRICS

REPO = Path(__file__).resolve().parents[1]


@METRICS.register_module(name="BenchNLL", force=True)
class BenchNLL(ClassificationMetric):
    """Mean negative log-likelihood of the true class, and top-1 (trials import this module)."""

    def __call__(self, preds, labels) -> dict[str, float]:
        preds, labels = as_arrays(preds, labels)
        p = np.clip(preds[np.arange(len(labels)), labels], 1e-12, 1.0)
        return {"nll": float(-np.log(p).mean()), "top_1": float((preds.argmax(1) == labels).mean())}


ARMS = (
    ("random", ["--sampler=random", "--pruner=none"]),
    ("tpe", ["--sampler=tpe", "--pruner=none"]),
    ("tpe+median", ["--sampler=tpe", "--pruner=median"]),
)

CONFIG = """\
_base_ = [{base!r}]
custom_imports = dict(imports=["benchmarks.bench_hpo"])
max_epochs = {epochs}
checkpoint_config = dict(interval={epochs}, out_dir="./output/", log_artifacts="best")
evaluation = dict(_delete_=True, interval=1, metric=dict(type="BenchNLL"), save_best="nll", rule="less")
hpo = dict(
    _delete_=True,
    metric="val/nll",
    direction="minimize",
    space={{
        "optimizer.lr": dict(type="float", low=1e-4, high=0.1, log=True),
        "optimizer.weight_decay": dict(type="float", low=1e-6, high=0.3, log=True),
        "model.backbone.widen_factor": dict(type="int", low=1, high=2),
    }},
    sampler=dict(type="tpe", n_startup_trials={startup}, multivariate=True),
    pruner=dict(type="median", n_startup_trials={startup}, n_warmup_steps={warmup}),
)
"""


def _uptime() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def run_hpo(args: list[str], env: dict, log: Path) -> float:
    """Run `antgo hpo ARGS` to completion; returns its wall time (s)."""
    t0 = time.perf_counter()
    with open(log, "a") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "antgo_mlflow", "hpo", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=4 * 3600,
        )
    if proc.returncode != 0:
        raise SystemExit(
            f"antgo hpo failed ({proc.returncode}); see {log}:\n{log.read_text()[-3000:]}"
        )
    return time.perf_counter() - t0


def finished(study) -> list:
    """The trials that ran to the end (complete or pruned)."""
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]


def study_result(storage: str, name: str, pieces: list[dict]) -> dict:
    """Best value, counts, and each finished trial's (study-clock seconds, value, state)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=storage)
    done = []
    for t in study.trials:
        if t.datetime_complete is None:
            continue
        end = t.datetime_complete.timestamp()
        offset = 0.0
        for piece in pieces:  # the piece the trial ended in: earlier pieces' walls + time in it
            if end <= piece["started"] + piece["wall"] + 1:
                done.append((offset + max(0.0, end - piece["started"]), t.value, t.state.name, t))
                break
            offset += piece["wall"]
    done.sort(key=lambda d: d[0])
    complete = [d for d in done if d[2] == "COMPLETE"]
    best = min(complete, key=lambda d: d[1]) if complete else None
    return {
        "study": study,
        "done": done,
        "best": best[1] if best else math.inf,
        "best_trial": best[3] if best else None,
        "complete": len(complete),
        "pruned": sum(d[2] == "PRUNED" for d in done),
        "numbers": [t.number for t in study.trials],
        "wall": sum(p["wall"] for p in pieces),
    }


def time_to_reach(result: dict, target: float) -> float:
    for seconds, value, state, _ in result["done"]:
        if state == "COMPLETE" and value <= target:
            return seconds
    return math.inf


def work_to_reach(result: dict, target: float | None = None) -> float:
    """Epochs x widen_factor trained until a trial finished at or below ``target`` (all of the
    study's with None): the cost in compute, which a busy shared machine does not distort."""
    work = 0.0
    for _, value, state, trial in result["done"]:
        work += len(trial.intermediate_values) * trial.params.get("model.backbone.widen_factor", 1)
        if target is not None and state == "COMPLETE" and value <= target:
            return work
    return work if target is None else math.inf


def best_top1(trial) -> float | None:
    """val/top_1 of the best trial at its best-NLL epoch (from its MLflow run)."""
    from mlflow import MlflowClient

    if trial is None or "mlflow_run_id" not in trial.user_attrs:
        return None
    client = MlflowClient()
    run_id = trial.user_attrs["mlflow_run_id"]
    nll = {m.step: m.value for m in client.get_metric_history(run_id, "val/nll")}
    top1 = {m.step: m.value for m in client.get_metric_history(run_id, "val/top_1")}
    if not nll:
        return None
    return top1.get(min(nll, key=nll.get))


def load_state(path: Path, setup: dict) -> dict:
    if path.is_file():
        state = json.loads(path.read_text())
        if state["setup"] != setup:
            raise SystemExit(
                f"bench_hpo: {path} was made with {state['setup']}, not {setup}: use --reset "
                "or another --state"
            )
        return state
    return {"setup": setup, "studies": {}}


def save_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)


def study_names(seeds: list[int], arms: list[str]) -> list[tuple[str, str, int]]:
    """(study name, arm, seed) in run order; the 1- and 2-worker studies last."""
    out = [(f"{m.replace('+', '-')}-{s}", m, s) for s in seeds for m in arms]
    return [*out, ("workers1", "workers1", 0), ("workers2", "workers2", 0)]


def run_piece(name, arm, seed, state, ctx) -> None:
    """One call of `antgo hpo` on study ``name``: the trials it still lacks, stopping to start
    new ones after ``--piece-seconds`` (0: none)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    entry = state["studies"].setdefault(name, {"pieces": [], "done": False})
    trials = ctx["trials"]
    if not entry["pieces"] and name in optuna.get_all_study_names(ctx["storage"]):
        # left by a first piece that was killed (its wall is unknown): start the study again
        optuna.delete_study(study_name=name, storage=ctx["storage"])
    if arm in ("workers1", "workers2"):
        flags = ["--sampler=random", "--pruner=none", f"--workers={arm[-1]}"]
        if name not in optuna.get_all_study_names(ctx["storage"]):
            # the same configurations as random seed 0, in its order
            base = optuna.load_study(study_name="random-0", storage=ctx["storage"])
            queued = optuna.create_study(
                study_name=name, storage=ctx["storage"], direction="minimize"
            )
            for t in sorted(finished(base), key=lambda t: t.number):
                queued.enqueue_trial(t.params)
    else:
        flags = [*dict(ARMS)[arm], f"--seed={seed}"]
    left = trials
    if name in optuna.get_all_study_names(ctx["storage"]):
        left = trials - len(finished(optuna.load_study(study_name=name, storage=ctx["storage"])))
    if left <= 0:
        entry["done"] = True
        return
    if ctx["piece_seconds"]:
        longest = max(state.get("longest_trial_s", 60.0), 10.0)
        flags.append(f"--timeout={max(1.0, ctx['piece_seconds'] - longest - 20):.0f}")
    load0 = _uptime()
    started = time.time()
    wall = run_hpo(
        [*ctx["common"], *flags, f"--trials={left}", f"--study={name}",
         f"--work-dir={ctx['root'] / name}"],
        ctx["env"], ctx["root"] / f"{name}.log",
    )  # fmt: skip
    entry["pieces"].append({"started": started, "wall": wall, "load": [load0, _uptime()]})
    study = optuna.load_study(study_name=name, storage=ctx["storage"])
    runs = [
        t for t in finished(study) if t.datetime_start and t.datetime_start.timestamp() >= started
    ]
    for t in runs:
        length = (t.datetime_complete - t.datetime_start).total_seconds()
        if not arm.startswith("workers"):
            state["longest_trial_s"] = max(state.get("longest_trial_s", 0.0), length)
    entry["done"] = len(finished(study)) >= trials
    print(
        f"  {name}: piece {len(entry['pieces'])}: {len(runs)} trials in {wall:.0f} s (load "
        f"{load0} -> {_uptime()}); {len(finished(study))}/{trials} done",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 seed, 4 trials, 2 epochs"
    )
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--state", default=None, help="state folder (default: in the temp dir)")
    parser.add_argument("--pieces", type=int, default=0, help="pieces to run now (0: all)")
    parser.add_argument(
        "--piece-seconds", type=float, default=0, help="stop starting trials after this (0: none)"
    )
    parser.add_argument(
        "--arms",
        default=",".join(m for m, _ in ARMS),
        help="comma-separated arms (random and tpe+median are needed for the ratio)",
    )
    parser.add_argument("--startup", type=int, default=None, help="TPE/median start-up trials")
    parser.add_argument(
        "--warmup", type=int, default=None, help="epochs before the median pruner may prune"
    )
    parser.add_argument("--reset", action="store_true", help="start again from nothing")
    parser.add_argument("--keep", action="store_true", help="keep the state when all is done")
    args = parser.parse_args()
    trials = args.trials or (4 if args.quick else 16)
    epochs = args.epochs or (2 if args.quick else 6)
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    startup = args.startup or (2 if args.quick else 4)
    arms = [a for a in args.arms.split(",") if a]
    unknown = set(arms) - set(dict(ARMS))
    if unknown or not {"random", "tpe+median"} <= set(arms):
        parser.error(f"--arms={args.arms}: random and tpe+median, optionally tpe")

    sys.path.insert(0, str(REPO))
    from antgo_mlflow.hpo.storage import normalise
    from tests.pg_server import PgServer

    suffix = "-quick" if args.quick else ""
    root = Path(args.state or Path(tempfile.gettempdir()) / f"antgo-bench-hpo{suffix}").resolve()
    if args.reset:
        shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # PostgreSQL runs as its own user under root
    warmup = min(3, epochs) if args.warmup is None else args.warmup
    setup = {"trials": trials, "epochs": epochs, "seeds": seeds, "startup": startup,
             "warmup": warmup, "arms": arms}  # fmt: skip
    state_path = root / "state.json"
    state = load_state(state_path, setup)
    config = root / "config.py"
    base = REPO / "recipes" / "digits" / "config.py"
    config.write_text(CONFIG.format(base=str(base), epochs=epochs, startup=startup, warmup=warmup))
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        ANTGO_PROGRESS="0",
        PYTHONUNBUFFERED="1",
    )
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    pg = PgServer(keep=root / "pg")
    try:
        pg.start()
        storage = pg.create_database("bench", exist_ok=True)
        storage_note = "PostgreSQL (a server on 127.0.0.1, data in the state folder)"
    except RuntimeError as exc:
        pg = None
        storage = str(root / "optuna-journal.log")
        storage_note = f"journal file (no PostgreSQL here: {exc})"
    ctx = {
        "storage": normalise(storage),
        "common": [f"--config={config}", f"--storage={storage}", "--experiment=bench-hpo"],
        "root": root,
        "env": env,
        "trials": trials,
        "piece_seconds": args.piece_seconds,
    }
    print(f"bench_hpo: {trials} trials x <= {epochs} epochs, seeds {seeds}, storage {storage_note}")
    print(f"bench_hpo: load at start {_uptime()}, state {root}")

    names = study_names(seeds, arms)
    ran = 0
    try:
        for name, arm, seed in names:
            while not state["studies"].get(name, {}).get("done"):
                if args.pieces and ran >= args.pieces:
                    break
                run_piece(name, arm, seed, state, ctx)
                save_state(state_path, state)
                ran += 1
        left = [n for n, _, _ in names if not state["studies"].get(n, {}).get("done")]
        if left:
            print(f"bench_hpo: {len(names) - len(left)}/{len(names)} studies done; run again "
                  f"to continue ({left[0]} next)")  # fmt: skip
            return
        report(state, seeds, arms, trials, ctx)
    finally:
        if pg is not None:
            pg.stop()
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


def report(state: dict, seeds: list[int], arms: list[str], trials: int, ctx: dict) -> None:
    """The table, the ratios and the last line."""
    results: dict[tuple[str, int], dict] = {}
    for name, arm, seed in study_names(seeds, arms):
        results[(arm, seed)] = study_result(ctx["storage"], name, state["studies"][name]["pieces"])
    walls = {k: r["wall"] for k, r in results.items()}
    w2 = results[("workers2", 0)]
    target = statistics.median(results[("random", s)]["best"] for s in seeds)
    random_wall = statistics.median(walls[("random", s)] for s in seeds)
    reach = {
        m: [time_to_reach(results[(m, s)], target) for s in seeds] for m in arms if m != "random"
    }
    ratios = {m: statistics.median(reach[m]) / random_wall for m in reach}
    ratio = ratios["tpe+median"]
    wall1, wall2 = walls[("workers1", 0)], w2["wall"]
    speedup = wall1 / wall2
    loads = [x for e in state["studies"].values() for p in e["pieces"] for x in p["load"]]
    ones = sorted(float(x.split()[0]) for x in loads)

    print()
    print(f"{'method':<12}{'seed':>5}{'best nll':>10}{'top-1':>8}{'complete':>10}{'pruned':>8}"
          f"{'wall s':>9}{'reach s':>9}{'pieces':>8}")  # fmt: skip
    for seed in seeds:
        for method in arms:
            r = results[(method, seed)]
            top1 = best_top1(r["best_trial"])
            name = f"{method.replace('+', '-')}-{seed}"
            print(
                f"{method:<12}{seed:>5}{r['best']:>10.4f}{(top1 if top1 is not None else float('nan')):>8.3f}"
                f"{r['complete']:>10}{r['pruned']:>8}{walls[(method, seed)]:>9.0f}"
                f"{time_to_reach(r, target):>9.0f}{len(state['studies'][name]['pieces']):>8}"
            )
    print(f"target (median of random's best nll over seeds): {target:.4f}")
    for method, times in reach.items():
        print(
            f"{method} time to reach it: {', '.join(f'{x:.0f}' for x in times)} s (median "
            f"{statistics.median(times):.0f} s) vs random's median wall {random_wall:.0f} s -> "
            f"ratio {ratios[method]:.2f}" + (" (goal <= 0.60)" if method == "tpe+median" else "")
        )
    random_work = statistics.median(work_to_reach(results[("random", s)]) for s in seeds)
    for method in reach:
        work = [work_to_reach(results[(method, s)], target) for s in seeds]
        print(
            f"{method} compute to reach it (epochs x width): {', '.join(f'{x:.0f}' for x in work)}"
            f" (median {statistics.median(work):.0f}) vs random's {random_work:.0f} -> ratio "
            f"{statistics.median(work) / random_work:.2f}"
        )
    distinct = len(set(w2["numbers"])) == len(w2["numbers"])
    print(
        f"workers: 1 worker {wall1:.0f} s, 2 workers {wall2:.0f} s for the same {trials} "
        f"configurations -> 2-worker time {wall2 / wall1:.2f}x (goal <= 0.65x), speedup "
        f"{speedup:.2f}; {w2['complete']} complete, trial numbers distinct: {distinct}"
    )
    print(f"bench_hpo: 1-min load over the pieces' starts and ends: {ones[0]:.2f}..{ones[-1]:.2f}")
    print(
        f"hpo: random_best={target:.4f} "
        f"tpe_best={statistics.median(results[('tpe+median', s)]['best'] for s in seeds):.4f} "
        f"tpe_time_to_random_best_ratio={ratio:.3f} workers2_speedup={speedup:.3f}"
    )


if __name__ == "__main__":
    main()
