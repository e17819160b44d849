"""Benchmark the notebook-02 claims: PNG export both ways, batched vs per-clip log-mel, librosa.

    .venv/bin/python benchmarks/bench_features.py [--dataset real|demo|PATH] [--device cuda]

Prints clips/s for the batched Pillow export and Microsoft Learn's plt.imsave-per-file export (same
clips, same dB range), batched log-mel on the device vs a per-clip Python loop on the CPU (with
PyTorch's default threads and with one thread), and the torchaudio-vs-librosa maximum difference.
The machine's load average is printed first: on a shared machine it changes the numbers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import torch  # noqa: E402

import utils  # noqa: E402


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = "real" if os.environ.get("AUDIO_COURSE_REAL_DATA") else "demo"
    ap.add_argument("--dataset", default=default)
    ap.add_argument("--device", default=None, help="default: utils.get_device()")
    ap.add_argument("--n-fast", type=int, default=2000, help="clips for the batched PNG export")
    ap.add_argument("--n-slow", type=int, default=200, help="clips for the matplotlib export")
    ap.add_argument("--n-batch", type=int, default=2000, help="clips for batched log-mel")
    ap.add_argument("--n-loop", type=int, default=500, help="clips for the per-clip loop")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    device = utils.get_device(args.device)
    print(utils.env_report(device))
    print("load average (1, 5, 15 min): {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    root = utils.resolve_dataset(args.dataset)
    yesno = utils.load_split(root, "yesno", "train", progress=False)
    train = utils.load_split(root, "12", "train", progress=False)
    print(
        f"dataset {args.dataset!r} ({root}): yesno/train {len(yesno)} clips, 12/train {len(train)}"
    )

    # --- PNG export -----------------------------------------------------------------------
    n_fast, n_slow = min(args.n_fast, len(yesno)), min(args.n_slow, len(yesno))
    tmp = Path(tempfile.mkdtemp(prefix="bench_png_"))
    try:
        db_range = utils.spectrogram_db_range(yesno.audio[:n_fast], device=device)
        fast = utils.export_spectrogram_pngs(
            yesno.audio[:n_fast], yesno.labels[:n_fast], yesno.classes, tmp / "fast",
            paths=yesno.paths[:n_fast], db_range=db_range, device=device,
        )  # fmt: skip
        slow = utils.export_spectrogram_pngs_matplotlib(
            yesno.audio[:n_slow], yesno.labels[:n_slow], yesno.classes, tmp / "slow",
            paths=yesno.paths[:n_slow], db_range=db_range,
        )  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"PNG export, batched + Pillow : {fast['n']:5d} clips {fast['seconds']:7.2f} s "
        f"{fast['clips_per_s']:8.1f} clips/s ({fast['shape'][0]}x{fast['shape'][1]} px)"
    )
    print(
        f"PNG export, matplotlib/file  : {slow['n']:5d} clips {slow['seconds']:7.2f} s "
        f"{slow['clips_per_s']:8.1f} clips/s"
    )
    print(f"PNG export speed-up          : {fast['clips_per_s'] / slow['clips_per_s']:.1f}x")

    # --- batched vs per-clip log-mel --------------------------------------------------------
    n_batch, n_loop = min(args.n_batch, len(train)), min(args.n_loop, len(train))
    audio = np.ascontiguousarray(train.audio[:n_batch])
    utils.batch_logmel(audio[:64], device=device)  # warm-up
    t_batch = _best(lambda: utils.batch_logmel(audio, device=device), args.repeats)
    t_loop = _best(lambda: utils.loop_logmel(audio[:n_loop]), args.repeats)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t_loop1 = _best(lambda: utils.loop_logmel(audio[:n_loop]), args.repeats)
    finally:
        torch.set_num_threads(threads)
    r_batch, r_loop, r_loop1 = n_batch / t_batch, n_loop / t_loop, n_loop / t_loop1
    print(f"log-mel batched on {device.type:4s}     : {n_batch:5d} clips {r_batch:9.0f} clips/s")
    print(f"log-mel per-clip loop (cpu, {threads} thr): {n_loop:5d} clips {r_loop:9.0f} clips/s")
    print(f"log-mel per-clip loop (cpu, 1 thr): {n_loop:5d} clips {r_loop1:9.0f} clips/s")
    print(
        f"batched speed-up: {r_batch / r_loop:.1f}x over the {threads}-thread loop, "
        f"{r_batch / r_loop1:.1f}x over the 1-thread loop"
    )

    # --- librosa cross-check -----------------------------------------------------------------
    rows = np.flatnonzero(train.labels == train.classes.index("yes"))[:20]
    worst = {"max_abs_log": 0.0, "max_abs_db": 0.0, "max_rel_power": 0.0}
    for r in rows:
        d = utils.compare_with_librosa(train.audio[r].astype(np.float32) / 32768)
        worst = {k: max(worst[k], d[k]) for k in worst}
    print(
        f"torchaudio vs librosa (same settings, {len(rows)} 'yes' clips): max |log-mel diff| "
        f"{worst['max_abs_log']:.2e} ({worst['max_abs_db']:.2e} dB), max power diff / peak "
        f"{worst['max_rel_power']:.2e}"
    )
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
