"""Resume after a real kill: SIGKILL a training process mid-run, restart it, and get exactly the
state an uninterrupted run with the same seed reaches (train.fit's checkpoint/resume)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from audiocourse.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 4

CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from types import SimpleNamespace

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from audiocourse.models import build_model
    from audiocourse.train import Pipeline, fit

    data, ckdir, epochs = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])

    def split(name):
        return SimpleNamespace(audio=np.load(data / f"x_{name}.npy"),
                               labels=np.load(data / f"y_{name}.npy"),
                               classes=["low", "mid", "high"])

    torch.manual_seed(123)
    model = build_model("bcresnet", 3, width=0.25)
    pipe = Pipeline(noise=np.load(data / "noise.npy"), silence_label=0)
    fit(model, split("train"), split("val"), pipeline=pipe, epochs=epochs, lr=1e-2,
        optimizer="adamw", warmup_epochs=1, label_smoothing=0.1, batch_size=16,
        device="cpu", checkpoint_dir=ckdir, seed=7, progress=False,
        model_name="bcresnet", model_kwargs={"width": 0.25})
    print("finished")
    """
)


def _write_data(d: Path) -> None:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    for name, n in (("train", 192), ("val", 48)):
        y = np.arange(n) % 3
        f = np.array([300.0, 900.0, 2500.0])[y][:, None]
        x = 0.3 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6, (n, 1)))
        x += 0.02 * rng.standard_normal((n, 16000))
        np.save(d / f"x_{name}.npy", (x * 32767).astype(np.int16))
        np.save(d / f"y_{name}.npy", y.astype(np.int64))
    np.save(d / "noise.npy", (0.1 * rng.standard_normal((4, 16000))).astype(np.float32))


def _start(data: Path, ckdir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data), str(ckdir), str(EPOCHS)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 120) -> None:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0 and "finished" in out, out


_TIMING = {"seconds", "train_seconds", "samples_per_s"}


def _deterministic(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in _TIMING} for r in history]


def _assert_same_tensors(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: {k} differs"


def test_killed_run_resumes_to_the_uninterrupted_state(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _write_data(data)

    # 1. the reference: one uninterrupted run
    ref_dir = tmp_path / "uninterrupted"
    _finish(_start(data, ref_dir))

    # 2. the same run, SIGKILLed while epoch 2 trains (right after epoch 1's checkpoint appears)
    run_dir = tmp_path / "killed"
    proc = _start(data, run_dir)
    deadline = time.monotonic() + 120
    while not (run_dir / "last.pt").exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(run_dir / "last.pt")["epoch"]
    if killed_at >= EPOCHS:
        pytest.fail("the kill came after the run had finished; the test proves nothing")
    assert killed_at >= 1

    # 3. restart with the same command: it resumes after the last finished epoch
    _finish(_start(data, run_dir))

    ref, got = load_checkpoint(ref_dir / "last.pt"), load_checkpoint(run_dir / "last.pt")
    assert got["epoch"] == ref["epoch"] == EPOCHS
    _assert_same_tensors(ref["state_dict"], got["state_dict"], "final weights")
    assert _deterministic(got["history"]) == _deterministic(ref["history"])
    assert got["metrics"] == ref["metrics"]  # best validation accuracy and epoch
    opt_ref, opt_got = ref["train_state"]["optimizer"], got["train_state"]["optimizer"]
    for (ka, va), (kb, vb) in zip(opt_ref["state"].items(), opt_got["state"].items(), strict=True):
        assert ka == kb
        _assert_same_tensors(va, vb, f"optimizer state {ka}")
    assert [r["lr"] for r in got["history"]] == [r["lr"] for r in ref["history"]]
    assert torch.equal(got["train_state"]["rng"]["torch"], ref["train_state"]["rng"]["torch"])
    best_ref, best_got = load_checkpoint(ref_dir / "best.pt"), load_checkpoint(run_dir / "best.pt")
    _assert_same_tensors(best_ref["state_dict"], best_got["state_dict"], "best weights")
    assert not list(run_dir.glob(".*tmp*")), "stale temporary checkpoint files"
