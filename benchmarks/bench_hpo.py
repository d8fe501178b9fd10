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
- Workers: the 16 configurations of random seed 0 are queued into a new study and run by 2
  worker processes (1 torch thread each); the baseline is random seed 0 itself (the same 16
  configurations, 1 process, 2 torch threads). speedup = 1-worker wall / 2-worker wall.

Run under the CPU lock; the last line is for scripts:
    flock /work/wt/cpu.lock .venv/bin/python benchmarks/bench_hpo.py [--quick]
    ... hpo: random_best=<a> tpe_best=<b> tpe_time_to_random_best_ratio=<r> workers2_speedup=<s>
"""

from __future__ import annotations

import argparse
import math
import os
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
    with open(log, "w") as out:
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


def study_result(storage: str, name: str, started: float) -> dict:
    """Best value, counts, and each finished trial's (seconds since start, value, state)."""
    import optuna

    study = optuna.load_study(study_name=name, storage=storage)
    done = []
    for t in study.trials:
        if t.datetime_complete is None:
            continue
        done.append((t.datetime_complete.timestamp() - started, t.value, t.state.name, t))
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
    }


def time_to_reach(result: dict, target: float) -> float:
    for seconds, value, state, _ in result["done"]:
        if state == "COMPLETE" and value <= target:
            return seconds
    return math.inf


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 seed, 4 trials, 2 epochs"
    )
    parser.add_argument("--trials", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    trials = args.trials or (4 if args.quick else 16)
    epochs = args.epochs or (2 if args.quick else 6)
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    startup = 2 if args.quick else 4

    sys.path.insert(0, str(REPO))
    from antgo_mlflow.hpo.storage import normalise
    from tests.pg_server import PgServer

    root = Path(tempfile.mkdtemp(prefix="bench-hpo-"))
    config = root / "config.py"
    base = REPO / "recipes" / "digits" / "config.py"
    warmup = min(3, epochs)
    config.write_text(CONFIG.format(base=str(base), epochs=epochs, startup=startup, warmup=warmup))
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}",
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        ANTGO_PROGRESS="0",
        PYTHONUNBUFFERED="1",
    )
    os.environ["MLFLOW_TRACKING_URI"] = env["MLFLOW_TRACKING_URI"]
    pg = PgServer()
    try:
        pg.start()
        storage = pg.create_database("bench")
        storage_note = "PostgreSQL (throw-away server on 127.0.0.1)"
    except RuntimeError as exc:
        pg = None
        storage = str(root / "optuna-journal.log")
        storage_note = f"journal file (no PostgreSQL here: {exc})"
    opened = normalise(storage)
    common = [f"--config={config}", f"--storage={storage}", "--experiment=bench-hpo"]
    print(f"bench_hpo: {trials} trials x <= {epochs} epochs, seeds {seeds}, storage {storage_note}")
    print(f"bench_hpo: load at start {_uptime()}, work folder {root}")

    results: dict[tuple[str, int], dict] = {}
    walls: dict[tuple[str, int], float] = {}
    try:
        for seed in seeds:
            for method, flags in ARMS:
                name = f"{method.replace('+', '-')}-{seed}"
                started = time.time()
                wall = run_hpo(
                    [*common, *flags, f"--trials={trials}", f"--seed={seed}", f"--study={name}",
                     f"--work-dir={root / name}"],
                    env, root / f"{name}.log",
                )  # fmt: skip
                results[(method, seed)] = study_result(opened, name, started)
                walls[(method, seed)] = wall
                r = results[(method, seed)]
                print(
                    f"  {method:<11} seed {seed}: best nll {r['best']:.4f}, {r['complete']} "
                    f"complete / {r['pruned']} pruned, {wall:.0f} s",
                    flush=True,
                )

        # 2 workers on the same 16 configurations as random seed 0
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        base_study = results[("random", 0)]["study"]
        queued = optuna.create_study(study_name="workers2", storage=opened, direction="minimize")
        for t in base_study.trials:
            queued.enqueue_trial(t.params)
        started = time.time()
        wall2 = run_hpo(
            [*common, "--sampler=random", "--pruner=none", f"--trials={trials}", "--workers=2",
             "--study=workers2", f"--work-dir={root / 'workers2'}"],
            env, root / "workers2.log",
        )  # fmt: skip
        w2 = study_result(opened, "workers2", started)
    finally:
        if pg is not None:
            pg.stop()

    target = statistics.median(results[("random", s)]["best"] for s in seeds)
    random_wall = statistics.median(walls[("random", s)] for s in seeds)
    reach = {m: [time_to_reach(results[(m, s)], target) for s in seeds] for m, _ in ARMS[1:]}
    ratios = {m: statistics.median(reach[m]) / random_wall for m in reach}
    ratio = ratios["tpe+median"]
    wall1 = walls[("random", 0)]
    speedup = wall1 / wall2

    print()
    print(f"{'method':<12}{'seed':>5}{'best nll':>10}{'top-1':>8}{'complete':>10}{'pruned':>8}"
          f"{'wall s':>9}{'reach s':>9}")  # fmt: skip
    for seed in seeds:
        for method, _ in ARMS:
            r = results[(method, seed)]
            top1 = best_top1(r["best_trial"])
            reach_s = time_to_reach(r, target)
            print(
                f"{method:<12}{seed:>5}{r['best']:>10.4f}{(top1 if top1 is not None else float('nan')):>8.3f}"
                f"{r['complete']:>10}{r['pruned']:>8}{walls[(method, seed)]:>9.0f}"
                f"{reach_s:>9.0f}"
            )
    print(f"target (median of random's best nll over seeds): {target:.4f}")
    for method, times in reach.items():
        print(
            f"{method} time to reach it: {', '.join(f'{x:.0f}' for x in times)} s (median "
            f"{statistics.median(times):.0f} s) vs random's median wall {random_wall:.0f} s -> "
            f"ratio {ratios[method]:.2f}" + (" (goal <= 0.60)" if method == "tpe+median" else "")
        )
    distinct = len(set(w2["numbers"])) == len(w2["numbers"])
    print(
        f"workers: 1 worker {wall1:.0f} s, 2 workers {wall2:.0f} s for the same {trials} "
        f"configurations -> 2-worker time {wall2 / wall1:.2f}x (goal <= 0.65x), speedup "
        f"{speedup:.2f}; {w2['complete']} complete, trial numbers distinct: {distinct}"
    )
    print(f"bench_hpo: load at end {_uptime()}")
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    print(
        f"hpo: random_best={target:.4f} "
        f"tpe_best={statistics.median(results[('tpe+median', s)]['best'] for s in seeds):.4f} "
        f"tpe_time_to_random_best_ratio={ratio:.3f} workers2_speedup={speedup:.3f}"
    )


if __name__ == "__main__":
    main()
