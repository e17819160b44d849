"""Benchmark README's first command, ``python utils.py quickstart`` (issue 11: >= 90 % on the demo
set's unseen synthetic speakers in <= 3 minutes on a 2-core CPU, after install).

    .venv/bin/python benchmarks/bench_quickstart.py            # seed 0, a fresh data folder
    .venv/bin/python benchmarks/bench_quickstart.py --seeds 3  # the spread over seeds

Each run is the real command in a subprocess with ``AUDIO_COURSE_DATA`` pointing at a new
temporary folder, so the demo set is built and decoded from scratch every time (as on a fresh
install); the printed time is wall-clock seconds of the whole command.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import load_report

ROOT = Path(__file__).resolve().parents[1]


def run(seed: int) -> tuple[float, float, int]:
    """(accuracy, seconds, test clips) of one fresh ``python utils.py quickstart``."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "AUDIO_COURSE_DATA": str(Path(tmp) / "data")}
        out = Path(tmp) / "run"
        cmd = [sys.executable, "utils.py", "quickstart", "--quiet", "--seed", str(seed),
               "--out", str(out)]
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
        m = json.loads((out / "metrics.json").read_text())
    return m["test_accuracy"], seconds, m["n_test"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=1)
    args = ap.parse_args()
    print(load_report())
    accs, times = [], []
    for seed in range(args.seeds):
        acc, sec, n = run(seed)
        accs.append(acc)
        times.append(sec)
        print(f"seed {seed}: {100 * acc:.2f} % of {n} test clips (unseen synthetic speakers), "
              f"{sec:.0f} s in all (demo set built, decoded, 40 epochs trained, tested)")
    if len(accs) > 1:
        print(f"mean {100 * np.mean(accs):.2f} ± {100 * np.std(accs, ddof=1):.2f} % (sd over "
              f"seeds), time median {np.median(times):.0f} s, max {max(times):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
