"""Benchmark notebooks 03, 03b and 04 on real clips: accuracy on unseen speakers, and speed.

    .venv/bin/python benchmarks/bench_models.py                   # both parts (~15 min, 2 cores)
    .venv/bin/python benchmarks/bench_models.py --parts yesno     # notebooks 03/03b's figures only
    .venv/bin/python benchmarks/bench_models.py --parts ten --cnn2d-spectrogram

Data: the real clips in ``$AUDIO_COURSE_REAL_DATA`` (or ``--data``), split by speaker by the data
layer (``data.load_task``: a salted speaker hash, 65/15/20 % of the speakers), so every test
clip is from a speaker never heard in training. Not a test: it prints figures.

yesno (notebooks 03 and 03b)
    * the original Microsoft Learn CNN, bugs included (``CNNetOriginal``), with the original recipe
      (Adam 1e-4, batch 15, 15 epochs, last epoch kept) from PNG images exported with notebook 02's
      exporter and read like ``ImageFolder`` (RGB, ``Resize((201, 81))``): test accuracy;
    * the same model and recipe from in-memory tensors with identical pixels: test accuracy
      (agreement) and training seconds per epoch for both routes, plus the input pipeline alone
      (one epoch of batches, no model);
    * the fixed ``CNNet`` with its recipe (``train.default_recipe('cnnet')``, as in notebook 03b;
      the tensor route with the device pipeline), for ``--seeds`` seeds (default 3; with ~110
      test clips one clip is 0.9 %): test accuracy of each, mean and standard deviation -- each
      the same as ``python utils.py train --task yesno --model cnnet --data real --seed S``.
leak (notebook 03b, section 3; not in the default parts)
    the fixed model trained on the original's random 80/20 split of all yes/no clips: accuracy on
    its test clips by speakers seen in training vs new speakers.
ten (notebook 04)
    the 1-D MFCC CNN, plain (source recipe: Adam 1e-3, no augmentation) and each improvement
    step (course recipe, deltas, batch norm, global average pooling, second block, kernel 5),
    and the 2-D CNN of notebook 03b on 40-band log-mel (``--cnn2d-spectrogram`` adds its 201 x 81
    spectrogram input, ~5x slower), all with the same number of epochs: validation and test
    accuracy (mean and standard deviation over ``--seeds`` seeds), parameters, seconds per epoch.

Threads: ``--threads auto`` uses one intra-op thread when the machine is busy (load >= half the
cores): OpenMP's spinning threads are many times slower than one thread when another process
holds the other core. The load and the thread count are printed with the results.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _machine import load_report, threads_for  # noqa: E402

from audiocourse import data, images  # noqa: E402
from audiocourse import train as T  # noqa: E402
from audiocourse.data import background_noise, load_task, resolve_dataset  # noqa: E402
from audiocourse.env import env_report, get_device  # noqa: E402
from audiocourse.models import build_model, model_frontend  # noqa: E402

ORIGINAL_RECIPE = {
    "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "schedule": "constant",
    "warmup_epochs": 0, "label_smoothing": 0.0, "batch_size": 15, "amp": False,  # fp32 as published
}  # fmt: skip
SOURCE_RECIPE_1D = {
    "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "constant",
    "warmup_epochs": 0, "label_smoothing": 0.0, "batch_size": 64,
}  # fmt: skip
NO_AUGMENT = {"time_shift_ms": 0.0, "noise_prob": 0.0, "spec_augment": False}
PLAIN_1D = {"n_mfcc": 13, "deltas": 0, "batch_norm": False, "gap": False, "blocks": 1,
            "kernel_size": 3}  # fmt: skip
STEPS_1D = [
    ("+ deltas (39 channels)", {"deltas": 2}),
    ("+ batch norm", {"batch_norm": True}),
    ("+ global average pooling", {"gap": True}),
    ("+ second conv block", {"blocks": 2}),
    ("+ kernel of 5 frames (= mfcc1d_plus)", {"kernel_size": 5}),
]


def _recipe(name: str, epochs: int) -> tuple[dict, dict]:
    """(fit keywords, Pipeline augmentation keywords) of ``train.default_recipe(name)``."""
    rec = T.default_recipe(name)
    aug = rec.pop("augment")
    rec.pop("model_kwargs")
    rec["epochs"] = epochs
    return rec, aug


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def _mean_std(accs: list[float]) -> str:
    """'95.5 %' for one run, '94.9 ± 1.1 %' (sample std) for several."""
    if len(accs) == 1:
        return _pct(accs[0])
    return f"{100 * np.mean(accs):.1f} ± {100 * np.std(accs, ddof=1):.1f} %"


def _seeds(accs: list[float], first: int) -> str:
    if len(accs) == 1:
        return f"seed {first}"
    each = ", ".join(f"{100 * a:.1f}" for a in accs)
    return f"seeds {first}-{first + len(accs) - 1}: {each}"


def _time_input(batches, device: torch.device) -> tuple[float, int]:
    """Seconds for one epoch of batches moved to ``device``, no model; and the clip count."""
    t0 = time.perf_counter()
    n = 0
    for xb, _ in batches:
        xb = xb.to(device, non_blocking=True)
        n += len(xb)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0, n


def _tensor_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device):
    x, y = x.to(device), y.to(device)
    order = torch.randperm(len(y), device=device)
    for i in range(0, len(y), batch_size):
        idx = order[i : i + batch_size]
        yield x[idx], y[idx]


def part_yesno(root: Path, args: argparse.Namespace, device: torch.device) -> list[str]:
    """Notebooks 03 and 03b's figures; returns markdown table rows."""
    seed = args.seed
    splits = load_task(root, "yesno", progress=False)
    classes = splits["train"].classes
    noise = background_noise(root, "train")
    sizes = ", ".join(f"{k} {len(v)} ({len(set(v.speakers))} speakers)" for k, v in splits.items())
    print(f"\n== yes/no (notebooks 03/03b) on {root.name}: {sizes}")
    rows = []

    out = Path(tempfile.mkdtemp(prefix="bench_models_png_"))
    ex = images.export_split_images(splits, out, device=device)
    rate = ex["clips_per_s"]
    print(f"PNG export: {ex['n']} images in {ex['seconds']:.1f} s ({rate:.0f} clips/s)")
    folders = ex["folders"]
    img = {k: images.SpectrogramImageFolder(f, "original", classes) for k, f in folders.items()}
    loader = {
        k: images.image_loader(ds, 15, shuffle=(k == "train"), seed=seed) for k, ds in img.items()
    }

    # 1. the original, image route, as published
    e = args.epochs_original
    torch.manual_seed(seed)
    m_img = build_model("cnnet_original", len(classes))
    h_img = T.fit(m_img, loader["train"], loader["validation"], epochs=e, device=device,
                  seed=seed, restore_best=False, progress=False, **ORIGINAL_RECIPE)  # fmt: skip
    acc_img = T.evaluate(m_img, loader["test"], device=device).accuracy
    s_img = float(np.mean(h_img["train_seconds"]))
    print(f"original CNN, image route, {e} epochs: test {_pct(acc_img)}, {s_img:.2f} s/epoch")
    rows.append(
        f"| yes/no | original CNN, bugs included (PNG route, Adam 1e-4, batch 15, {e} ep, last) "
        f"| {T.count_parameters(m_img):,} | {_pct(acc_img)} | {s_img:.1f} |"
    )

    # 2. the same model from in-memory tensors with identical pixels
    px = {
        k: (
            images.pixels_from_audio(s.audio, ex["db_range"], highest_first=True, device=device),
            torch.as_tensor(s.labels),
        )
        for k, s in splits.items()
    }
    torch.manual_seed(seed)
    m_t = build_model("cnnet_original", len(classes))
    h_t = T.fit(m_t, px["train"], px["validation"], epochs=e, device=device, seed=seed,
                restore_best=False, progress=False, **ORIGINAL_RECIPE)  # fmt: skip
    acc_t = T.evaluate(m_t, px["test"], device=device).accuracy
    s_t = float(np.mean(h_t["train_seconds"]))
    in_img, n_img = _time_input(loader["train"], device)
    in_t, n_t = _time_input(_tensor_batches(*px["train"], 15, device), device)
    print(f"original CNN, tensor route, {e} epochs: test {_pct(acc_t)}, {s_t:.2f} s/epoch")
    print(
        f"input pipeline alone, one epoch of {n_img} clips: PNG DataLoader {in_img:.3f} s "
        f"({n_img / in_img:,.0f} clips/s), tensors {in_t:.4f} s ({n_t / in_t:,.0f} clips/s): "
        f"{in_img / in_t:,.0f}x; whole training epoch {s_img / s_t:.2f}x"
    )
    rows.append(
        f"| yes/no | original CNN, bugs included (tensor route, same recipe) "
        f"| {T.count_parameters(m_t):,} | {_pct(acc_t)} | {s_t:.1f} |"
    )
    rows.append(
        f"| yes/no | input pipeline only, one epoch: PNG `DataLoader` vs tensors "
        f"| | {in_img:.3f} s vs {in_t:.4f} s ({in_img / in_t:,.0f}x) | |"
    )

    # 3. the fixed model, its recipe, the device pipeline (= python utils.py train ...)
    rec, aug = _recipe("cnnet", args.epochs_fixed)
    accs, secs = [], []
    for s in range(seed, seed + args.seeds):
        torch.manual_seed(s)
        fixed = build_model("cnnet", len(classes))
        pipe = T.Pipeline(model_frontend("cnnet"), noise=noise, **aug)
        h_f = T.fit(fixed, splits["train"], splits["validation"], pipeline=pipe, device=device,
                    seed=s, progress=False, **rec)  # fmt: skip
        accs.append(T.evaluate(fixed, splits["test"], pipe, device=device).accuracy)
        secs.append(float(np.mean(h_f["train_seconds"])))
        print(f"fixed CNNet, seed {s}: test {_pct(accs[-1])} (best val epoch {h_f.best_epoch}), "
              f"{secs[-1]:.2f} s/epoch")  # fmt: skip
    print(f"  recipe {rec}, augmentation {aug}")
    rows.append(
        f"| yes/no | fixed CNNet (tensor route, recipe 'cnnet', {rec['epochs']} ep, best val; "
        f"{_seeds(accs, seed)}) | {T.count_parameters(fixed):,} | {_mean_std(accs)} "
        f"| {np.mean(secs):.1f} |"
    )

    return rows


def part_leak(root: Path, args: argparse.Namespace, device: torch.device) -> list[str]:
    """Notebook 03b, section 3: the fixed model on the original's random 80/20 split."""
    seed = args.seed
    splits = load_task(root, "yesno", progress=False)
    classes = splits["train"].classes
    noise = background_noise(root, "train")
    rec, aug = _recipe("cnnet", args.epochs_fixed)
    tr, te = data.leaky_split_data(splits, (0.8, 0.2), seed=seed)
    leak = data.speaker_overlap(tr.speakers, te.speakers)
    print(
        f"\n== leaky random 80/20 split of all yes/no clips (notebook 03b, section 3): "
        f"{len(tr)} train / {len(te)} test"
    )
    torch.manual_seed(seed)
    m_l = build_model("cnnet", len(classes))
    p_l = T.Pipeline(model_frontend("cnnet"), noise=noise, **aug)
    T.fit(m_l, tr, None, pipeline=p_l, device=device, seed=seed, progress=False,
          restore_best=False, **rec)  # fmt: skip
    r = T.evaluate(m_l, te, p_l, device=device)
    seen = np.isin(te.speakers, list(set(tr.speakers)))
    ok = r.predictions == r.labels
    print(
        f"{leak['test_clips_seen_speaker']}/{leak['test_clips']} test clips by speakers seen in "
        f"training; accuracy all {_pct(ok.mean())}, seen speakers {_pct(ok[seen].mean())}, "
        f"new speakers {_pct(ok[~seen].mean())} ({(~seen).sum()} clips)"
    )
    return [
        f"| yes/no | fixed CNNet on the leaky random 80/20 split: all / seen / new speakers "
        f"({len(te)} / {seen.sum()} / {(~seen).sum()} clips) | | {_pct(ok.mean())} / "
        f"{_pct(ok[seen].mean())} / {_pct(ok[~seen].mean())} | |"
    ]


def part_ten(root: Path, args: argparse.Namespace, device: torch.device) -> list[str]:
    """Notebook 04's figures; returns markdown table rows."""
    seed, e = args.seed, args.epochs_ten
    splits = load_task(root, "10", progress=False)
    classes = splits["train"].classes
    noise = background_noise(root, "train")
    sizes = ", ".join(f"{k} {len(v)} ({len(set(v.speakers))} speakers)" for k, v in splits.items())
    print(f"\n== 10 commands (notebook 04) on {root.name}, {e} epochs each: {sizes}")
    course, course_aug = _recipe("mfcc1d_plus", e)
    print(f"course recipe (default_recipe('mfcc1d_plus')): {course}, augmentation {course_aug}")
    source = dict(SOURCE_RECIPE_1D, epochs=e)

    configs = [("plain 1-D CNN, source recipe (Adam 1e-3, no augmentation)", "mfcc1d_plus",
                dict(PLAIN_1D), None, source, NO_AUGMENT)]  # fmt: skip
    kw = dict(PLAIN_1D)
    configs.append(("+ course recipe", "mfcc1d_plus", dict(kw), None, course, course_aug))
    for label, change in STEPS_1D:
        kw.update(change)
        configs.append((label, "mfcc1d_plus", dict(kw), None, course, course_aug))
    feats = [("log-mel 40x101", {"kind": "logmel", "n_mels": 40})]
    if args.cnn2d_spectrogram:
        feats.append(("dB spectrogram 201x81", model_frontend("cnnet")))
    for label, feat in feats:
        configs.append((f"2-D CNN of notebook 03b (CNNet) on {label}", "cnnet", {}, feat, course,
                        course_aug))  # fmt: skip

    rows = []
    for label, name, mkw, feat, rec, aug in configs:
        vals, tests, secs = [], [], []
        for s in range(seed, seed + args.seeds):
            torch.manual_seed(s)
            model = build_model(name, len(classes), **mkw)
            pipe = T.Pipeline(feat or model_frontend(name, **mkw), noise=noise, **aug)
            h = T.fit(model, splits["train"], splits["validation"], pipeline=pipe, device=device,
                      seed=s, progress=False, **rec)  # fmt: skip
            vals.append(T.evaluate(model, splits["validation"], pipe, device=device).accuracy)
            tests.append(T.evaluate(model, splits["test"], pipe, device=device).accuracy)
            secs.append(float(np.mean(h["train_seconds"])))
        n = T.count_parameters(model)
        s_ep = float(np.mean(secs))
        print(f"{label:62} val {_mean_std(vals):>13} test {_mean_std(tests):>13} "
              f"{n:>9,} params {s_ep:6.2f} s/ep ({_seeds(tests, seed)})")  # fmt: skip
        rows.append(f"| 10 commands | {label} | {n:,} | {_mean_std(tests)} (val {_mean_std(vals)}) "
                    f"| {s_ep:.1f} |")  # fmt: skip
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("AUDIO_COURSE_REAL_DATA"),
                   help="folder of real clips (default: $AUDIO_COURSE_REAL_DATA)")  # fmt: skip
    p.add_argument("--parts", default="yesno,ten", help="comma-separated: yesno, ten, leak")
    p.add_argument("--epochs-original", type=int, default=15, help="original recipe: 15")
    p.add_argument("--epochs-fixed", type=int, default=20, help="fixed CNNet (yes/no)")
    p.add_argument("--epochs-ten", type=int, default=15, help="every 10-command model")
    p.add_argument("--cnn2d-spectrogram", action="store_true",
                   help="also the 2-D CNN on the 201x81 spectrogram (slow on a CPU)")  # fmt: skip
    p.add_argument("--threads", default="auto", help="torch intra-op threads, or 'auto'")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", type=int, default=3,
                   help="seeds seed..seed+N-1 (fixed CNNet and every 'ten' model)")  # fmt: skip
    p.add_argument("--device", default=None)
    args = p.parse_args()
    if not args.data:
        p.error("set AUDIO_COURSE_REAL_DATA or pass --data")
    root = resolve_dataset(args.data)
    device = torch.device(args.device) if args.device else get_device()
    torch.set_num_threads(threads_for(args.threads))
    print(env_report(device))
    print(f"{load_report()}; torch threads {torch.get_num_threads()}; seed {args.seed}")
    print("command: python " + " ".join(sys.argv))
    t0 = time.perf_counter()
    rows = []
    parts = [s.strip() for s in args.parts.split(",") if s.strip()]
    if "yesno" in parts:
        rows += part_yesno(root, args, device)
    if "leak" in parts:
        rows += part_leak(root, args, device)
    if "ten" in parts:
        rows += part_ten(root, args, device)
    print(f"\n{load_report()}; total {time.perf_counter() - t0:.0f} s\n")
    print("| task | model | parameters | test accuracy | s / epoch |")
    print("|---|---|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
