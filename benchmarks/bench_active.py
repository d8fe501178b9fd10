"""Active learning on the embedded digits: learning curves per strategy, label errors, scoring speed.

1. **Learning curves.** The 1,797 digits (32x32 RGB) split into a fixed test set (500) and a pool
   (1,297). Each seed starts from 20 random labels; each round trains a model from scratch through
   the engine's Runner, scores the rest of the pool with a strategy (ACQUISITIONS, the same code
   as ``antgo active rank``) and labels its 20 picks, up to 300 labels. Printed: test accuracy per
   round (mean ± std over seeds), the labels each strategy needs to reach random's 300-label
   accuracy, and the area under each curve (mean accuracy over 20..300 labels).
   Training is made stable before strategies are compared: a fixed budget of steps whatever the
   label count (from scratch, seeded per round and shared by all strategies — common random
   numbers), a one-cycle schedule, batches of 32 drawn with replacement (BatchNorm never sees a
   batch of 2), light translation augmentation, and seeds averaged.
   The model: the project's WideResNet-10-1 behind a 4x average pool (the digits are 8x8 scans
   rendered at 32x32, so 8x8 loses nothing and trains ~4x faster), with a linear ClsHead; its 64-d
   features are the embeddings k-center uses. One torch thread (``--threads``): batches this small
   gain little from a second one, and OpenMP threads collapse (10x slower) on a shared machine.
2. **Label errors.** 5 % of the digits' train split get a random wrong label; ``find_issues`` with
   ``cv_folds=3`` (the default digits recipe trained 3 times through the engine, 12 epochs each:
   a fold model sees 2/3 of the data, and at the recipe's 6 epochs its held-out accuracy was 0.956,
   which found 78 % of the flips; 12 epochs: 0.967 and 86 %) must find >= 80 % of the flips at
   precision >= 0.5.
3. **Speed.** Scoring 100,000 samples x 10 classes per non-diversity strategy (<= 1 s), k-center
   picking 1,000 from 20,000 x 128 (<= 10 s), with the ratio to a plain-numpy k-center measured in
   the same run.

Run under the CPU lock and quote the load:

    flock /work/wt/cpu.lock python benchmarks/bench_active.py            # ~10 min on 2 cores
    python benchmarks/bench_active.py --quick                            # smoke run, ~1 min

On a shared machine, run it in pieces (one strategy x one seed, the label-error part, the speed
part) so that the lock is held a minute or two at a time; the figures go to a JSON file that the
next invocation resumes from, and the tables print once every piece is in it:

    while flock /work/wt/cpu.lock python benchmarks/bench_active.py \
        --results bench_active.json --pieces 5; [ $? = 3 ]; do sleep 5; done

(it exits 3 while pieces are missing, 0 once the tables are printed). The file remembers the
options it was started with; other options start a new file or are refused.

The last line, for scripts:
``active: default=<strategy> labels_to_match_random=<N> random_labels=300 auc_default=<x> auc_random=<y>``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STRATEGIES = ("random", "margin", "kcenter", "hybrid", "activelab")
DEFAULT = "hybrid"
MEAN, STD = 0.1307, 0.3081  # normalisation of the grey digits (all three channels are equal)


# -- the model and the data, registered for the Runner ------------------------------------------
def register_bench_modules() -> None:
    """A backbone (WRN-10-1 after an average pool) and an in-memory dataset, in the registries."""
    import torch
    from torch import nn
    from torch.utils.data import Dataset

    from antgo_mlflow.registry import DATASETS, MODELS

    @MODELS.register_module(force=True)
    class PooledWRN(nn.Module):
        """The project's WideResNet (features only) on an average-pooled image."""

        def __init__(self, depth: int = 10, widen_factor: int = 1, pool: int = 4):
            super().__init__()
            self.pool = nn.AvgPool2d(pool)
            self.wrn = MODELS.build(
                dict(
                    type="WideResNet",
                    num_classes=None,
                    depth=depth,
                    widen_factor=widen_factor,
                    bn_momentum=0.1,
                ),
                path="model.backbone.wrn",
            )

        def forward(self, x):
            return self.wrn(self.pool(x))

    @DATASETS.register_module(force=True)
    class BenchDigits(Dataset):
        """``length`` samples drawn with replacement from ``indices`` of an .npz, shifted by ±2 px."""

        def __init__(self, npz: str, indices: list, length: int, seed: int = 0, augment=True):
            data = np.load(npz)
            idx = np.asarray(indices, dtype=np.int64)
            self.x = torch.from_numpy(data["x"][idx])  # (L, 3, 32, 32) float32, normalised
            self.y = torch.from_numpy(data["y"][idx])
            rng = np.random.default_rng(seed)
            self.order = rng.integers(0, len(idx), size=length)
            self.shift = rng.integers(-2, 3, size=(length, 2)) if augment else None

        def __len__(self) -> int:
            return len(self.order)

        def __getitem__(self, i: int) -> dict:
            j = int(self.order[i])
            image = self.x[j]
            if self.shift is not None:
                dy, dx = (int(v) for v in self.shift[i])
                image = torch.roll(image, shifts=(dy, dx), dims=(1, 2))
            return {"image": image, "label": int(self.y[j])}


def train_config(
    npz: str,
    labelled: list[int],
    steps: int,
    batch: int,
    seed: int,
    pool: int = 4,
    lr: float = 5e-3,
) -> dict:
    """The Runner config of one round: ``steps`` iterations of ``batch`` from ``labelled``."""
    return dict(
        seed=seed,
        max_epochs=1,
        model=dict(
            type="ImageClassifier",
            backbone=dict(type="PooledWRN", pool=pool),
            head=dict(type="ClsHead", in_channels=64, num_classes=10),
        ),
        data=dict(
            train=dict(
                type="BenchDigits", npz=npz, indices=list(labelled), length=steps * batch, seed=seed
            ),
            train_dataloader=dict(samples_per_gpu=batch, workers_per_gpu=0, drop_last=True),
        ),
        optimizer=dict(type="AdamW", lr=lr, weight_decay=5e-4),
        optimizer_config=dict(grad_clip=None),
        lr_config=dict(policy="OneCycle"),
        log_config=dict(interval=10**6, mlflow=False, hooks=[]),
        checkpoint_config=dict(interval=1),
    )


def train_round(npz, labelled, steps, batch, seed, work_dir, **kwargs):
    """Train through the engine's Runner; return the trained model (eval mode)."""
    from antgo_mlflow.config import Config
    from antgo_mlflow.engine.runner import Runner

    cfg = Config(train_config(npz, labelled, steps, batch, seed, **kwargs))
    runner = Runner(cfg, work_dir=work_dir, seed=seed)
    runner.train()
    return runner.model_core.eval()


def infer(model, x, batch: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, 10), embeddings (N, 64)) of normalised images ``x``."""
    import torch

    probs, feats = [], []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            xb = x[i : i + batch]
            if callable(getattr(model, "extract_features", None)):
                f = model.extract_features({"image": xb})
            else:
                f = model.extract_feat(xb)
            probs.append(model.head.predict(model.head(f)).numpy())
            feats.append(f.reshape(len(xb), -1).numpy())
    return np.concatenate(probs).astype(np.float64), np.concatenate(feats)


# -- the learning-curve experiment -------------------------------------------------------------------
def split(labels: np.ndarray, test_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (pool, test) indices."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.extend(members[: round(test_size * len(members) / len(labels))].tolist())
    test = np.array(sorted(test[:test_size]))
    pool = np.setdiff1d(np.arange(len(labels)), test)
    return pool, test


def run_curve(args, x, y, npz, tmp: Path, name: str, seed: int) -> list[float]:
    """Test accuracies at 20, 40, ..., max labels of strategy ``name`` from seed ``seed``'s start.

    One (strategy, seed) is one piece of the benchmark: the 20-label model and every round's
    training seed depend on ``seed`` only, so pieces run in separate processes give the same
    numbers as one long run (common random numbers across strategies).
    """
    import torch

    from antgo_mlflow.active.rank import select
    from antgo_mlflow.active.strategies import Pool
    from antgo_mlflow.registry import ACQUISITIONS

    pool_idx, test_idx = split(y, args.test)
    xt = torch.from_numpy(x[test_idx])
    sizes = curve_sizes(args)
    rng = np.random.default_rng(1000 + seed)
    labelled = rng.choice(pool_idx, size=args.initial, replace=False).tolist()
    strategy = ACQUISITIONS.build(dict(type=name))
    curve = []
    for r, n in enumerate(sizes):
        round_seed = seed * 1000 + r  # shared by all strategies: common random numbers
        model = train_round(npz, labelled, args.steps, args.batch, round_seed, str(tmp / "work"))
        pt, _ = infer(model, xt)
        curve.append(float((pt.argmax(1) == y[test_idx]).mean()))
        if n == sizes[-1]:
            break
        rest = np.setdiff1d(pool_idx, labelled)
        probs, emb = infer(model, torch.from_numpy(x[rest]))
        lab_probs, lab_emb = infer(model, torch.from_numpy(x[labelled]))
        p = Pool(
            probs,
            embeddings=emb,
            labeled_probs=lab_probs,
            labeled_labels=y[labelled],
            labeled_embeddings=lab_emb,
        )
        sel = select(p, args.step, strategy, seed=round_seed)
        labelled += rest[sel.order[: args.step]].tolist()
    return curve


def curve_sizes(args) -> list[int]:
    """The label counts of the learning curve: initial, initial + step, ..., max labels."""
    return list(range(args.initial, args.max_labels + 1, args.step))


def labels_to_reach(sizes, curve, target) -> int | None:
    """The first label count whose (mean) accuracy reaches ``target``."""
    for n, a in zip(sizes, curve):
        if a >= target - 1e-9:
            return n
    return None


def area(sizes, curve) -> float:
    """Mean accuracy over the label range (trapezoid area / width)."""
    return float(np.trapezoid(curve, sizes) / (sizes[-1] - sizes[0]))


def report_curves(result) -> dict:
    sizes, acc = result["sizes"], result["acc"]
    means = {s: np.mean([acc[s][k] for k in sorted(acc[s])], axis=0) for s in acc}
    stds = {s: np.std([acc[s][k] for k in sorted(acc[s])], axis=0) for s in acc}
    print("\ntest accuracy by labels (mean ± std over seeds)")
    print(f"{'labels':>7}" + "".join(f"{s:>16}" for s in acc))
    for i, n in enumerate(sizes):
        print(f"{n:>7}" + "".join(f"{means[s][i]:>10.3f} ±{stds[s][i]:.3f}" for s in acc))
    base = "random" if "random" in acc else next(iter(acc))
    target = float(means[base][-1])
    print(
        f"\nlabels to reach {base}'s {sizes[-1]}-label accuracy ({target:.3f}) and area under the curve"
    )
    print(f"{'strategy':<12}{'labels':>8}{'saved':>8}{'AUC':>8}")
    out = {"target": target, "base": base, "labels": {}, "auc": {}}
    for s in acc:
        need = labels_to_reach(sizes, means[s], target)
        auc = area(sizes, means[s])
        out["labels"][s], out["auc"][s] = need, auc
        saved = f"{1 - need / sizes[-1]:.0%}" if need else "-"
        print(f"{s:<12}{need if need else '>' + str(sizes[-1]):>8}{saved:>8}{auc:>8.4f}")
    return out


# -- label errors ------------------------------------------------------------------------------------
def run_issues(args, tmp: Path) -> dict:
    """Flip 5 % of the digits' train labels; find them with find_issues(cv_folds=3)."""
    from antgo_mlflow.active.label_issues import find_issues
    from antgo_mlflow.data.sources.digits import prepare_digits
    from antgo_mlflow.gt import load_gt, save_gt

    data = prepare_digits()
    train_gt = Path(data.splits["train"].gt)
    samples = load_gt(train_gt)
    for s in samples:  # absolute paths: the noisy copy lives in tmp, not in the shared cache
        s["image_file"] = str((train_gt.parent / s["image_file"]).resolve())
    if args.quick:
        samples = samples[: args.issues_subset]
    rng = np.random.default_rng(7)
    n_flip = round(0.05 * len(samples))
    flipped = rng.choice(len(samples), size=n_flip, replace=False)
    for i in flipped:
        true = samples[i]["image_label"]
        wrong = int(rng.choice([c for c in range(10) if c != true]))
        samples[i]["image_label"], samples[i]["image_label_name"] = wrong, str(wrong)
    # the noisy copy names the cached digits by absolute path: allow that folder (antgo_mlflow.gt)
    roots = [r for r in os.environ.get("ANTGO_DATA_ROOTS", "").split(os.pathsep) if r]
    os.environ["ANTGO_DATA_ROOTS"] = os.pathsep.join([*roots, str(train_gt.parent.resolve())])
    noisy = tmp / "noisy" / "annotation.json"
    noisy.parent.mkdir()
    save_gt(noisy, samples)
    config = Path(__file__).resolve().parents[1] / "recipes" / "digits" / "config.py"
    t = time.perf_counter()
    result = find_issues(
        noisy, tmp / "issues", cv_folds=3, config=str(config), epochs=args.issues_epochs, seed=0
    )
    seconds = time.perf_counter() - t
    found = set(result.issues.tolist())
    truth = set(int(i) for i in flipped)
    recall = len(found & truth) / len(truth)
    precision = len(found & truth) / max(1, len(found))
    print(
        f"\nlabel errors: {len(truth)} of {len(samples)} train labels flipped; find_issues(cv_folds=3) "
        f"flagged {len(found)}: recall {recall:.3f} (goal >= 0.80), precision {precision:.3f} "
        f"(goal >= 0.50), {seconds:.0f} s"
    )
    return {"recall": recall, "precision": precision, "flagged": len(found), "flips": len(truth)}


# -- speed -------------------------------------------------------------------------------------------
def kcenter_numpy(x: np.ndarray, k: int) -> list[int]:
    """The plain-numpy reference: the same greedy k-center, one norm over the pool per pick."""
    picked = [int(((x - x.mean(0)) ** 2).sum(1).argmax())]
    mind = np.linalg.norm(x - x[picked[0]], axis=1)
    for _ in range(k - 1):
        j = int(mind.argmax())
        picked.append(j)
        mind = np.minimum(mind, np.linalg.norm(x - x[j], axis=1))
    return picked


def run_speed(args) -> dict:
    from antgo_mlflow.active.rank import select
    from antgo_mlflow.active.strategies import Pool
    from antgo_mlflow.active.strategies.kcenter import kcenter_greedy
    from antgo_mlflow.registry import ACQUISITIONS

    rng = np.random.default_rng(0)
    n, c = args.speed_n, 10
    logits = rng.normal(size=(n, c)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    pool = Pool(probs)
    print(f"\nscoring {n:,} samples x {c} classes (best of 3, budget 1,000)")
    out = {}
    for name in ("random", "least_confidence", "margin", "entropy", "activelab"):
        strategy = ACQUISITIONS.build(dict(type=name))
        select(pool, 1000, strategy)  # warm-up (cleanlab's first import)
        times = []
        for _ in range(3):
            t = time.perf_counter()
            select(pool, 1000, strategy)
            times.append(time.perf_counter() - t)
        out[name] = min(times)
        print(f"  {name:<18}{min(times):>8.3f} s   (goal <= 1 s)")
    two = Pool(np.stack([probs, probs[::-1]]))
    strategy = ACQUISITIONS.build(dict(type="disagreement"))
    t = time.perf_counter()
    select(two, 1000, strategy)
    out["disagreement (2 models)"] = time.perf_counter() - t
    print(f"  {'disagreement x2':<18}{out['disagreement (2 models)']:>8.3f} s   (goal <= 1 s)")

    m, d, k = args.kcenter_n, 128, args.kcenter_k
    emb = rng.normal(size=(m, d)).astype(np.float32)
    kcenter_greedy(emb[:1000], 10)  # warm-up
    t = time.perf_counter()
    picked, _, _ = kcenter_greedy(emb, k)
    t_torch = time.perf_counter() - t
    t = time.perf_counter()
    ref = kcenter_numpy(emb, k)
    t_numpy = time.perf_counter() - t
    same = picked.tolist() == ref
    print(
        f"k-center: {k:,} picks from {m:,} x {d}: torch {t_torch:.2f} s (goal <= 10 s), plain numpy "
        f"{t_numpy:.2f} s, ratio numpy/torch {t_numpy / t_torch:.1f}x, same picks: {same}"
    )
    out.update(kcenter_s=t_torch, kcenter_numpy_s=t_numpy, kcenter_same=same)
    return out


PIECES_INCOMPLETE = 3  # exit status while the results file still misses pieces


def options_key(args) -> dict:
    """The options every piece of one results file must share."""
    keys = ("quick", "seeds", "strategies", "test", "initial", "step", "max_labels", "steps")
    keys += ("batch", "issues_epochs", "issues_subset", "speed_n", "kcenter_n", "kcenter_k")
    return {k: getattr(args, k) for k in keys}


def all_pieces(args) -> list[str]:
    """Piece names in running order: ``curves/<strategy>/<seed>``, ``issues``, ``speed``."""
    pieces = []
    if "curves" not in args.skip:
        pieces += [f"curves/{s}/{seed}" for seed in range(args.seeds) for s in args.strategies]
    pieces += [part for part in ("issues", "speed") if part not in args.skip]
    return pieces


def load_results(path: str | None, args) -> dict:
    """The results file's pieces (empty for a new file); SystemExit when its options differ."""
    if not path or not Path(path).exists():
        return {"options": options_key(args), "pieces": {}}
    data = json.loads(Path(path).read_text())
    if data.get("options") != options_key(args):
        raise SystemExit(
            f"bench_active: {path} was started with other options ({data.get('options')}); "
            "give the same options or another --results file"
        )
    return data


def save_results(path: str | None, data: dict) -> None:
    """Write the results file atomically (a piece killed mid-way leaves the previous file)."""
    if not path:
        return
    tmp = Path(f"{path}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def run_piece(piece: str, args, x, labels, npz, tmp: Path):
    """The figures of one piece."""
    if piece.startswith("curves/"):
        _, name, seed = piece.split("/")
        return run_curve(args, x, labels, npz, tmp, name, int(seed))
    if piece == "issues":
        return run_issues(args, tmp)
    return run_speed(args)


def print_load(prefix: str) -> str:
    load = os.getloadavg()
    text = f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    print(f"{prefix}{text}", flush=True)
    return text


def report(args, done: dict) -> dict:
    """Print the tables of every part from the pieces; return the figures."""
    figures: dict = {}
    if "curves" not in args.skip:
        acc = {s: {} for s in args.strategies}
        for seed in range(args.seeds):
            for s in args.strategies:
                acc[s][seed] = done[f"curves/{s}/{seed}"]["figures"]
        print(
            f"\nlearning curves: pool {args.pool_size}, test {args.test}, "
            f"{args.initial} -> {args.max_labels} labels (+{args.step}/round), {args.seeds} "
            f"seeds, {args.steps} steps x batch {args.batch} per round"
        )
        for seed in range(args.seeds):
            for s in args.strategies:
                piece = done[f"curves/{s}/{seed}"]
                print(
                    f"  seed {seed} {s:<10} " + " ".join(f"{a:.3f}" for a in piece["figures"])
                    + f"   ({piece['seconds']:.0f} s, {piece['load']})"
                )  # fmt: skip
        curves = {"sizes": curve_sizes(args), "acc": acc}
        seconds = sum(done[p]["seconds"] for p in done if p.startswith("curves/"))
        figures["curves"] = {**report_curves(curves), "seconds": seconds, "raw": curves}
        print(f"learning curves took {seconds:.0f} s (sum over pieces)")
    for part in ("issues", "speed"):
        if part in args.skip:
            continue
        figures[part] = done[part]["figures"]
        print(f"\n{part} ({done[part]['seconds']:.0f} s, {done[part]['load']}):")
        if part == "issues":
            f = figures[part]
            print(
                f"label errors: {f['flips']} train labels flipped; find_issues(cv_folds=3) "
                f"flagged {f['flagged']}: recall {f['recall']:.3f} (goal >= 0.80), precision "
                f"{f['precision']:.3f} (goal >= 0.50)"
            )
        else:
            for name, value in figures[part].items():
                shown = f"{value:.3f} s" if isinstance(value, float) else value
                print(f"  {name:<24}{shown}")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (~1-2 min)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--test", type=int, default=500, help="fixed test set size")
    parser.add_argument("--initial", type=int, default=20)
    parser.add_argument("--step", type=int, default=20)
    parser.add_argument("--max-labels", type=int, default=300)
    parser.add_argument("--steps", type=int, default=150, help="training iterations per round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--issues-epochs", type=int, default=12, help="epochs per fold model")
    parser.add_argument("--skip", nargs="*", default=[], choices=["curves", "issues", "speed"])
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument(
        "--results", default=None, help="JSON file of finished pieces: resumed from, appended to"
    )
    parser.add_argument(
        "--pieces", type=int, default=None, help="run at most this many missing pieces, then stop"
    )
    args = parser.parse_args()
    args.issues_subset = 450
    args.speed_n, args.kcenter_n, args.kcenter_k = 100_000, 20_000, 1_000
    if args.quick:
        args.seeds, args.strategies, args.max_labels, args.steps = 1, ["random", DEFAULT], 60, 60
        args.issues_epochs = 2
        args.speed_n, args.kcenter_n, args.kcenter_k = 20_000, 5_000, 200
    os.environ.setdefault("ANTGO_PROGRESS", "0")

    import torch

    from antgo_mlflow.data.sources.digits import digits_arrays

    torch.set_num_threads(args.threads)
    print(
        f"bench_active: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
        + (" (--quick)" if args.quick else "")
    )
    print_load("bench_active: at the start, ")
    data = load_results(args.results, args)
    done = data["pieces"]
    todo = [p for p in all_pieces(args) if p not in done]
    if args.pieces is not None:
        todo = todo[: max(0, args.pieces)]
    register_bench_modules()
    images, labels = digits_arrays()
    args.pool_size = len(images) - args.test
    x = ((images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0) - MEAN) / STD
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-active-") as tmp:
        tmp = Path(tmp)
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlflow.db'}")
        npz = str(tmp / "digits.npz")
        np.savez(npz, x=x, y=labels.astype(np.int64))
        for piece in todo:
            t = time.perf_counter()
            figures = run_piece(piece, args, x, labels, npz, tmp)
            seconds = time.perf_counter() - t
            load = os.getloadavg()
            done[piece] = {
                "figures": figures,
                "seconds": seconds,
                "load": f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
            }
            save_results(args.results, data)
            print(f"piece {piece}: {seconds:.0f} s, {done[piece]['load']}", flush=True)
    print(f"\nthis invocation: {time.perf_counter() - t0:.0f} s")
    print_load("bench_active: at the end, ")
    missing = [p for p in all_pieces(args) if p not in done]
    if missing:
        print(
            f"bench_active: {len(missing)} of {len(all_pieces(args))} pieces missing "
            f"(next: {missing[0]}); run again with --results {args.results} to continue"
        )
        sys.exit(PIECES_INCOMPLETE)
    figures = report(args, done)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
    if "curves" in figures:
        c = figures["curves"]
        need = c["labels"].get(DEFAULT)
        print(
            f"active: default={DEFAULT} labels_to_match_random={need if need else 'none'} "
            f"random_labels={args.max_labels} auc_default={c['auc'].get(DEFAULT, float('nan')):.4f} "
            f"auc_random={c['auc'].get('random', float('nan')):.4f}"
        )


if __name__ == "__main__":
    main()
