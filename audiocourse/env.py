"""Every setup cell's helpers: where data and runs live (Drive in Colab), device, seed (01-06)."""

from __future__ import annotations

import os
import platform
import random
import sys
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "repo_root", "data_dir", "runs_dir", "use_drive", "in_colab", "get_device", "set_seed",
    "env_report",
]  # fmt: skip
# onnxruntime (1.32) sends usage telemetry from Linux too: a course that runs offline says no.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def repo_root() -> Path:
    """The repository root: the folder that holds ``utils.py`` (notebook 01)."""
    return Path(__file__).resolve().parent.parent


def _home() -> Path:
    # The course folder for data and runs: on Drive after use_drive(), else the repository.
    return Path(os.environ.get("AUDIO_COURSE_HOME", repo_root())).expanduser()


def data_dir() -> Path:
    """Datasets, archives and the int16 cache: ``$AUDIO_COURSE_DATA``, else ``data/`` of the
    course folder (``<repo>/data``, or on Drive after ``use_drive``) (notebook 01)."""
    return Path(os.environ.get("AUDIO_COURSE_DATA", _home() / "data")).expanduser()


def runs_dir() -> Path:
    """Checkpoints: ``runs/`` of the course folder (on Drive after ``use_drive``) (notebook 05)."""
    return _home() / "runs"


def in_colab() -> bool:
    """True inside Google Colab: the setup cell bootstraps only there (notebook 01)."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def use_drive() -> Path | None:
    """In Colab, mount Google Drive and keep data, cache and runs in ``MyDrive/audio-course``,
    so a runtime reset loses nothing; ``None`` (nothing changed) outside Colab (notebook 05).

    ``$AUDIO_COURSE_DRIVE`` stands in for the mounted ``MyDrive`` folder (tests, other clouds).
    """
    drive = os.environ.get("AUDIO_COURSE_DRIVE")
    if drive is None:
        if not in_colab():
            return None
        drive = "/content/drive/MyDrive"  # where Colab mounts "My Drive"
        if not Path(drive).is_dir():
            from google.colab import drive as colab_drive  # only exists in Colab

            colab_drive.mount(str(Path(drive).parent))  # asks for permission once per runtime
    home = Path(drive) / "audio-course"
    home.mkdir(parents=True, exist_ok=True)
    os.environ["AUDIO_COURSE_HOME"] = str(home)  # read by data_dir() and runs_dir()
    return home


def get_device(prefer: str | None = None) -> torch.device:
    """Best device: CUDA, then Apple MPS, then CPU; ``prefer`` forces one (notebook 01)."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (all devices) for repeatable runs (notebook 01)."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds legacy global users (matplotlib, old code)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def env_report(device: torch.device | None = None) -> str:
    """What this run uses: Python, torch, torchaudio, the device and, on a GPU, the training
    precision; without CUDA it says how to get a GPU in Colab (notebook 01)."""
    import torchaudio  # imported here: it is slow and only the report needs its version

    device = device or get_device()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        amp = "bf16" if props.major >= 8 else "fp16 + GradScaler (no bf16 before Ampere)"
        dev = f"cuda ({props.name}, {props.total_memory / 2**30:.1f} GiB; training in {amp})"
    elif device.type == "mps":
        dev = "mps (Apple GPU)"
    else:
        dev = f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"
        if not torch.cuda.is_available():
            colab = " - Colab: Runtime > Change runtime type > T4 GPU" if in_colab() else ""
            dev += f"; torch sees no CUDA GPU{colab}"
    return (f"Python {platform.python_version()} | torch {torch.__version__} | "
            f"torchaudio {torchaudio.__version__} | device: {dev}")
