"""Issue 2 figures: demo-set build time, first-load decode throughput, cached reload time.

    .venv/bin/python benchmarks/bench_data.py [--real DIR] [--speakers 80]

Throughputs are clips/s; each is printed next to a reference measured in the same process (a
plain per-file Python loop reading floats with soundfile), so the ratio holds on any machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiocourse import data  # noqa: E402
from audiocourse.demo import make_demo_dataset  # noqa: E402


def naive_decode(paths: list[str]) -> np.ndarray:
    """The tutorial way: one float read per file in a Python loop, then pad."""
    out = np.zeros((len(paths), data.CLIP_SAMPLES), np.float32)
    for i, p in enumerate(paths):
        x, _ = sf.read(p, dtype="float32")
        out[i, : min(len(x), data.CLIP_SAMPLES)] = x[: data.CLIP_SAMPLES]
    return out


def bench_split(root: Path, task: str, split: str, cache: Path) -> None:
    clips = data.build_index(root)
    for c in clips:  # warm the OS page cache so both decoders read from memory: a fair ratio
        Path(c.path).read_bytes()
    t0 = time.perf_counter()
    d = data.load_split(root, task, split, cache_dir=cache, progress=False)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = data.load_split(root, task, split, cache_dir=cache, progress=False)
    _ = np.asarray(again.audio).sum()  # touch every byte: a real reload, not just a memmap
    reload = time.perf_counter() - t0
    real_paths = [p for p in d.paths if not p.startswith("<")]
    t0 = time.perf_counter()
    naive_decode(real_paths)
    naive = len(real_paths) / (time.perf_counter() - t0)
    n = len(d)
    print(f"  {root.name} task {task}/{split}: {n} clips ({len(clips)} indexed)")
    print(f"    reference loop (sf.read per file) : {naive:9.0f} clips/s")
    print(
        f"    first load (decode + cache)       : {n / first:9.0f} clips/s "
        f"({first:.2f} s, {n / first / naive:.1f}x the loop)"
    )
    print(
        f"    cached reload (memmap + read)     : {n / reload:9.0f} clips/s "
        f"({reload * 1e3:.0f} ms, {n / reload / naive:.0f}x the loop)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--real", default=os.environ.get("AUDIO_COURSE_REAL_DATA"))
    ap.add_argument("--speakers", type=int, default=80)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print(f"cpu cores: {os.cpu_count()}")
        t0 = time.perf_counter()
        root = make_demo_dataset(tmp / "demo", n_speakers=args.speakers, progress=False)
        build = time.perf_counter() - t0
        n = len(data.build_index(root))
        print(
            f"(a) demo set: {n} clips, {args.speakers} speakers built in {build:.1f} s "
            f"({n / build:.0f} clips/s)"
        )
        print("(b) decode throughput, first load vs cached reload")
        bench_split(root, "35", "train", tmp / "cache")
        if args.real:
            bench_split(Path(args.real), "12", "train", tmp / "cache")
            bench_split(Path(args.real), "35", "test", tmp / "cache")
        else:
            print("  (no real clips: set AUDIO_COURSE_REAL_DATA or pass --real DIR)")


if __name__ == "__main__":
    main()
