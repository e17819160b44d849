"""Environment helpers used by every notebook's setup cell (notebook 01 onwards)."""

from __future__ import annotations

import os
import platform
import random
import sys
from pathlib import Path

import numpy as np
import torch

__all__ = ["repo_root", "data_dir", "in_colab", "get_device", "set_seed", "env_report"]


def repo_root() -> Path:
    """The repository root: the folder that holds ``utils.py`` (notebook 01)."""
    return Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """Where datasets land: ``$AUDIO_COURSE_DATA`` if set, else ``<repo>/data`` (notebook 01)."""
    return Path(os.environ.get("AUDIO_COURSE_DATA", repo_root() / "data")).expanduser()


def in_colab() -> bool:
    """True inside Google Colab: the setup cell bootstraps only there (notebook 01)."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


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
    """One line saying what this run uses: Python, torch, torchaudio, device (notebook 01)."""
    import torchaudio  # imported here: it is slow and only the report needs its version

    device = device or get_device()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        dev = f"cuda ({props.name}, {props.total_memory / 2**30:.1f} GiB)"
    elif device.type == "mps":
        dev = "mps (Apple GPU)"
    else:
        dev = f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads; no GPU)"
    return (
        f"Python {platform.python_version()} | torch {torch.__version__} | "
        f"torchaudio {torchaudio.__version__} | device: {dev}"
    )
