"""Benchmark notebook 05's claims: feature pipeline speed, training throughput, real-data accuracy.

    .venv/bin/python benchmarks/bench_kws.py                 # all three parts
    .venv/bin/python benchmarks/bench_kws.py --parts a       # only the feature pipeline
    .venv/bin/python benchmarks/bench_kws.py --parts c --folds 3 --jobs 2  # choose on CV

(a) Preprocessing + augmentation + features of a batch on the device (``train.Pipeline`` with the
    default recipe's augmentation), in clips/s, next to the Microsoft Learn route measured in the
    same run on the same clips (a matplotlib PNG per clip). Neither includes WAV decoding.
(b) Training throughput (samples/s: pipeline + forward + backward + step) of the default model;
    on CUDA also one full-size epoch of the 12-class task simulated with a synthetic int16 tensor.
(c) Real clips ($AUDIO_COURSE_REAL_DATA, 12 classes): the course default (``train_task``'s
    recipe) next to a plain baseline (``baseline_kws.py``: a ~300k-parameter residual CNN with an
    untuned modern recipe), on the same clips and seeds. ``--folds K`` cross-validates both on
    the train + validation speakers (K speaker-grouped folds, last epoch, the test split never
    touched): the figure to choose a recipe by. Without it, each is trained once per seed and
    tested once on the test split.

The machine's load average is printed first: on a shared machine it changes every timing. With
``--threads auto`` one intra-op thread is used when the machine is busy (load >= half the
cores): OpenMP's spinning worker threads are many times slower than one thread when the other
core is taken.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import baseline_kws  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _machine import busy, load_report, threads_for  # noqa: E402

from audiocourse import train as T  # noqa: E402
from audiocourse.data import (  # noqa: E402
    background_noise,
    load_split,
    load_task,
    pool_splits,
    resolve_dataset,
    subset_split,
)
from audiocourse.env import env_report, get_device  # noqa: E402
from audiocourse.features import export_spectrogram_pngs_matplotlib  # noqa: E402
from audiocourse.models import build_model, model_frontend  # noqa: E402

#: The course's default model and recipe (train.RECIPES): what notebook 05 and
#: `python utils.py train` use; (c) trains it unchanged unless flags override it.
_R = T.default_recipe("bcresnet")
CPU_RECIPE = {"width": _R["model_kwargs"]["width"], "epochs": _R["epochs"],
              "batch_size": _R["batch_size"], "lr": _R["lr"]}  # fmt: skip


def _thread_settings() -> list[int]:
    """1 thread, plus all cores when the machine is quiet enough for them to help."""
    cores = os.cpu_count() or 1
    if cores == 1:
        return [1]
    if busy():
        print(f"  (machine busy: timing 1 thread only; {cores} threads would spin-wait)")
        return [1]
    return [1, cores]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _clips(n: int, data: str | None) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """n int16 clips (real ones when available), labels, classes, a noise bank."""
    if data:
        root = resolve_dataset(data)
        split = load_split(root, "12", "train", progress=False)
        idx = np.arange(n) % len(split)
        noise = background_noise(root, "train")
        return np.asarray(split.audio[idx]), split.labels[idx], split.classes, noise
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((n, 16000)) * 2000).astype(np.int16)
    labels = rng.integers(0, 12, n)
    noise = (0.1 * rng.standard_normal((20, 16000))).astype(np.float32)
    return audio, labels, [str(i) for i in range(12)], noise


def _pipeline_rate(
    audio: np.ndarray,
    labels: np.ndarray,
    noise: np.ndarray,
    device: torch.device,
    batch: int,
    repeats: int = 3,
) -> float:
    """Best-of-``repeats`` clips/s of the training pipeline over all of ``audio``."""
    # the default recipe's augmentation, exactly as `python utils.py train` sets it up
    augment = {**T.default_recipe("bcresnet")["augment"], "silence_label": 11}
    pipe = T.Pipeline(model_frontend("bcresnet"), noise=noise, **augment).to(device)
    x = torch.from_numpy(audio).to(device)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device)
    pipe.fit_normaliser(x[: min(len(x), 512)])
    gen = torch.Generator(device=device).manual_seed(0)

    def run() -> None:
        with torch.no_grad():
            for i in range(0, len(x), batch):
                pipe(x[i : i + batch], y[i : i + batch], train=True, generator=gen)
        _sync(device)

    run()  # warm-up (allocations, cuFFT plans)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return len(x) / best


def part_a(args: argparse.Namespace, device: torch.device) -> dict:
    print("\n(a) preprocessing + augmentation + features")
    audio, labels, classes, noise = _clips(max(args.clips, args.png_clips), args.data)
    with tempfile.TemporaryDirectory() as tmp:
        png = export_spectrogram_pngs_matplotlib(
            audio[: args.png_clips], labels[: args.png_clips], classes, tmp
        )
    png_rate = png["clips_per_s"]
    print(
        f"  Microsoft Learn route (matplotlib PNG per clip, {args.png_clips} clips): "
        f"{png_rate:8.1f} clips/s"
    )
    out = {"png_clips_per_s": png_rate}
    cpu = torch.device("cpu")
    default_threads = torch.get_num_threads()
    for threads in _thread_settings():
        torch.set_num_threads(threads)
        for batch in (32, 128):
            rate = _pipeline_rate(audio[: args.clips], labels[: args.clips], noise, cpu, batch)
            out[f"cpu_{threads}t_b{batch}"] = rate
            print(
                f"  course pipeline, CPU, {threads} thread(s), batch {batch:4d}: {rate:9.0f} "
                f"clips/s = {rate / png_rate:6.1f} x the PNG route"
            )
    torch.set_num_threads(default_threads)
    if device.type == "cuda":
        big = np.resize(audio, (max(args.clips, 8192), 16000))
        lab = np.resize(labels, len(big))
        rate = _pipeline_rate(big, lab, noise, device, 2048)
        out["cuda_b2048"] = rate
        print(
            f"  course pipeline, {torch.cuda.get_device_name(device)}, batch 2048: "
            f"{rate:9.0f} clips/s = {rate / png_rate:6.0f} x the PNG route"
        )
    return out


def _train_rate(
    model_name: str,
    width: float,
    n: int,
    batch: int,
    device: torch.device,
    amp: bool = True,
    compile: bool = False,
    epochs: int = 1,
) -> tuple[float, float]:
    """(samples/s of the last epoch, seconds of the last epoch) of fit() on synthetic clips."""
    rng = np.random.default_rng(0)
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randint(-3000, 3000, (n, 16000), dtype=torch.int16, device=device, generator=g)
    y = torch.randint(0, 12, (n,), device=device, generator=g)
    split = type("Split", (), {"audio": x, "labels": y, "classes": [str(i) for i in range(12)]})
    kwargs = {"width": width} if model_name == "bcresnet" else {}
    model = build_model(model_name, 12, **kwargs)
    noise = (0.1 * rng.standard_normal((50, 16000))).astype(np.float32)
    augment = {**T.default_recipe(model_name)["augment"], "silence_label": 11}
    pipe = T.Pipeline(model_frontend(model_name, **kwargs), noise=noise, **augment)
    pipe.to(device).fit_normaliser(x[:1024])
    hist = T.fit(model, split, None, pipeline=pipe, epochs=epochs, batch_size=batch,
                 device=device, amp=amp, compile=compile, progress=False, lr=1e-3)  # fmt: skip
    return hist[-1]["samples_per_s"], hist[-1]["train_seconds"]


def part_b(args: argparse.Namespace, device: torch.device) -> dict:
    print("\n(b) training throughput (pipeline + forward + backward + step), default model")
    w, b = args.width, args.batch_size
    out = {}
    default_threads = torch.get_num_threads()
    for threads in _thread_settings():
        torch.set_num_threads(threads)
        rate, _ = _train_rate("bcresnet", w, args.train_clips, b, torch.device("cpu"))
        out[f"cpu_{threads}t"] = rate
        print(f"  BC-ResNet-{w:g}, CPU, {threads} thread(s), batch {b}: {rate:7.0f} samples/s")
    torch.set_num_threads(default_threads)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for bs in (256, 512):
            rate, sec = _train_rate("bcresnet", w, 85_000, bs, device, epochs=2,
                                    compile=args.compile)  # fmt: skip
            out[f"cuda_epoch_b{bs}_s"] = sec
            out[f"cuda_b{bs}"] = rate
            print(
                f"  BC-ResNet-{w:g}, {name}, AMP {T.amp_dtype(device)}, batch {bs}: "
                f"{rate:9.0f} samples/s; one 85,000-clip epoch (the full 12-class training "
                f"split's shape, synthetic int16 on the GPU): {sec:5.1f} s"
            )
        print(
            "  A T4 is an estimate only, not measured: about 8-12x slower than an H100 for this "
            "small, memory-bound model (memory bandwidth 320 GB/s vs 3.35 TB/s; fp16, no bf16)."
        )
    return out


def fold_of(speaker: str, k: int) -> int:
    """Speaker-grouped fold (the dataset README's hashing idea): no speaker in two folds."""
    return int(hashlib.sha1(f"cv-fold/{speaker}".encode()).hexdigest(), 16) % k


def _course_model(train, held_out, noise, seed: int, args, device, last_epoch: bool) -> float:
    """The course default (``train_task``'s recipe, ``--course`` overrides) trained on
    ``train``, scored on ``held_out``; with ``last_epoch`` the held-out part never picks an
    epoch."""
    kw = {"width": args.width, "epochs": args.epochs, "batch_size": args.batch_size,
          "lr": args.lr, "restore_best": not last_epoch, **json.loads(args.course)}
    res = T.train_task(args.real, "12", "bcresnet", splits={"train": train,
                       "validation": held_out, "test": held_out}, noise=noise, device=device,
                       progress=args.progress, seed=seed, **kw)
    return res.test.accuracy


def _cv_run(job: tuple[str, int, int], args: argparse.Namespace) -> dict:
    """One (model, fold, seed) of the cross-validation, in a worker process (one thread)."""
    which, fold, seed = job
    torch.set_num_threads(1 if args.jobs > 1 else torch.get_num_threads())
    splits = load_task(args.real, "12", progress=False)  # the int16 cache: a memory map
    pool = pool_splits(splits["train"], splits["validation"])
    folds = np.array([fold_of(s, args.folds) for s in pool.speakers])
    tr = subset_split(pool, np.flatnonzero(folds != fold))
    va = subset_split(pool, np.flatnonzero(folds == fold))
    noise, t0 = background_noise(args.real, "train"), time.perf_counter()
    if which == "baseline":
        net = baseline_kws.train_baseline(tr.audio, tr.labels, noise, len(pool.classes), seed,
                                          args.baseline_epochs)  # fmt: skip
        acc = baseline_kws.accuracy(net, va.audio, va.labels)
    else:
        acc = _course_model(tr, va, noise, seed, args, get_device(args.device), last_epoch=True)
    return {"model": which, "fold": fold, "seed": seed, "folds": args.folds, "acc": acc,
            "n_train": len(tr.labels), "n_held_out": len(va.labels), "course": args.course,
            "epochs": args.epochs if which != "baseline" else args.baseline_epochs
            or baseline_kws.RECIPE["epochs"], "seconds": round(time.perf_counter() - t0)}


def _cross_validate(args: argparse.Namespace) -> dict:
    """k speaker folds x seeds x (course default, baseline); the test split is not touched.
    ``--jobs`` runs that many at once (one thread each); ``--log`` appends every run."""
    models = {"course": ["course default"], "baseline": ["baseline"]}.get(
        args.only, ["course default", "baseline"])
    jobs = [(m, f, s) for f in range(args.folds) for s in range(args.seed, args.seed + args.seeds)
            for m in models]  # fmt: skip
    scores: dict[str, dict[tuple[int, int], float]] = {m: {} for m in models}
    with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as ex:
        for rec in ex.map(_cv_run, jobs, [args] * len(jobs)):
            scores[rec["model"]][rec["fold"], rec["seed"]] = rec["acc"]
            print(f"  fold {rec['fold']} ({rec['n_train']} train / {rec['n_held_out']} held-out "
                  f"clips), seed {rec['seed']}: {rec['model']} {100 * rec['acc']:.2f} % "
                  f"({rec['seconds']} s)", flush=True)
            if args.log:
                with open(args.log, "a") as f:
                    f.write(json.dumps(rec) + "\n")
    for name, acc in scores.items():
        a = 100 * np.array(list(acc.values()))
        print(f"  {name}: {a.mean():.2f} ± {a.std(ddof=1) if len(a) > 1 else 0:.2f} % (mean ± "
              f"sd over {args.folds} folds x {args.seeds} seeds, last epoch)")
    if len(models) == 2:
        diff = 100 * np.subtract(*[list(scores[m].values()) for m in models])
        print(f"  paired difference: {diff.mean():+.2f} ± "
              f"{diff.std(ddof=1) if len(diff) > 1 else 0:.2f} points")
    return {m: list(v.values()) for m, v in scores.items()}


def part_c(args: argparse.Namespace, device: torch.device) -> dict:
    print("\n(c) real-data check: the course default next to a plain baseline")
    args.real = args.real_data or os.environ.get("AUDIO_COURSE_REAL_DATA")
    if not args.real or not Path(args.real).is_dir():
        print("  skipped: set AUDIO_COURSE_REAL_DATA (or --real-data) to the real clips")
        return {}
    splits = load_task(args.real, "12", progress=False)
    noise = background_noise(args.real, "train")
    print(f"  {args.real}: task 12, " + ", ".join(f"{k} {len(v)}" for k, v in splits.items())
          + f"; noise bank {noise.shape[0]} x 1 s")
    if args.folds > 1:
        return _cross_validate(args)
    results: dict[str, list[float]] = {"course default": [], "baseline": []}
    for seed in range(args.seed, args.seed + args.seeds):  # the test split, once per seed
        results["course default"].append(_course_model(
            splits["train"], splits["test"], noise, seed, args, device, last_epoch=False))
        tr, te = splits["train"], splits["test"]
        model = baseline_kws.train_baseline(np.asarray(tr.audio), tr.labels, noise, 12, seed,
                                            args.baseline_epochs)
        results["baseline"].append(baseline_kws.accuracy(model, np.asarray(te.audio), te.labels))
        print(f"  seed {seed}: course default {100 * results['course default'][-1]:.2f} %, "
              f"baseline {100 * results['baseline'][-1]:.2f} % on {len(te)} test clips")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default="abc", help="any of a, b, c")
    ap.add_argument("--device", default=None, help="default: the best (cuda > mps > cpu)")
    ap.add_argument("--threads", default="auto", help="intra-op threads: N or auto")
    ap.add_argument("--data", default=None,
                    help="clips for (a): a dataset name/folder (default: $AUDIO_COURSE_REAL_DATA "
                         "if set, else synthetic)")  # fmt: skip
    ap.add_argument("--clips", type=int, default=2048, help="clips for the pipeline timing")
    ap.add_argument("--png-clips", type=int, default=200, help="clips for the PNG route")
    ap.add_argument("--train-clips", type=int, default=1024, help="clips for (b) on the CPU")
    ap.add_argument("--real-data", default=None, help="default: $AUDIO_COURSE_REAL_DATA")
    ap.add_argument("--width", type=float, default=CPU_RECIPE["width"])
    ap.add_argument("--epochs", type=int, default=CPU_RECIPE["epochs"])
    ap.add_argument("--batch-size", type=int, default=CPU_RECIPE["batch_size"])
    ap.add_argument("--lr", type=float, default=CPU_RECIPE["lr"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1, help="(c): the default model for N seeds")
    ap.add_argument("--compile", action="store_true", help="torch.compile on CUDA in (b)")
    ap.add_argument("--folds", type=int, default=0,
                    help="(c): speaker-grouped cross-validation on train+validation (k folds)")
    ap.add_argument("--baseline-epochs", type=int, default=None, help="default: its 40")
    ap.add_argument("--course", default="{}",
                    help='(c): JSON train_task keywords for the course model, e.g. '
                         '\'{"normalise": "band", "epochs": 60}\' (before issue 12)')  # fmt: skip
    ap.add_argument("--only", choices=["course", "baseline"], default=None,
                    help="(c) with --folds: run only this model")
    ap.add_argument("--jobs", type=int, default=1,
                    help="(c) with --folds: runs at once, one thread each (2 on 2 cores)")
    ap.add_argument("--log", default=None, help="(c) with --folds: append each run (JSONL)")
    ap.add_argument("--json", default=None, help="write every figure to this JSON file")
    ap.add_argument("--progress", action="store_true", help="progress bars in (c)")
    args = ap.parse_args()
    if args.data is None:
        args.data = os.environ.get("AUDIO_COURSE_REAL_DATA")

    device = get_device(args.device)
    torch.set_num_threads(threads_for(args.threads))
    print(env_report(device))
    print(f"{load_report()}; torch threads: {torch.get_num_threads()} (--threads {args.threads})")
    t0 = time.perf_counter()
    figures: dict = {"device": str(device), "threads": torch.get_num_threads()}
    if "a" in args.parts:
        figures["a"] = part_a(args, device)
    if "b" in args.parts:
        figures["b"] = part_b(args, device)
    if "c" in args.parts:
        figures["c"] = part_c(args, device)
    print(f"\n{load_report()}; benchmark wall time {time.perf_counter() - t0:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
