"""The course's one training loop, its batch pipeline, checkpoints and metrics (notebooks 03-05).

Notebooks 03, 04 and 05 and the command line all train through :func:`fit` and measure through
:func:`evaluate`. The fast route for waveforms is a :class:`Pipeline`: the cached int16 split is
moved to the device **once**, and every batch is augmented and turned into features *on the
device* -- no DataLoader workers decoding WAV files every epoch::

    splits = load_task(root, "12")                       # int16 (N, 16000) arrays, cached
    pipe = Pipeline({"kind": "logmel", "n_mels": 40}, noise=background_noise(root))
    model = build_model("bcresnet", n_classes=12, width=3)
    history = fit(model, splits["train"], splits["validation"], pipeline=pipe, epochs=30,
                  model_name="bcresnet", model_kwargs={"width": 3}, checkpoint_dir="runs/kws")
    result = evaluate(model, splits["test"], pipe)      # accuracy, per-class figures, confusion
    infer, meta = load_model("runs/kws/best.pt")         # (B, 16000) waveform -> logits

Checkpoints (``last.pt`` every epoch, ``best.pt`` at each new best validation accuracy) are
written atomically and hold everything needed to continue after a crash or a Colab disconnect:
``fit`` with the same ``checkpoint_dir`` resumes where it stopped and ends in exactly the state an
uninterrupted run would have reached.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .env import get_device
from .features import (
    frontend_config,
    make_frontend,
    mix_noise,
    spec_augment,
    speed_perturb,
    time_shift,
)

__all__ = [
    "Normaliser",
    "Pipeline",
    "History",
    "EvalResult",
    "RunResult",
    "RECIPES",
    "default_recipe",
    "fit",
    "evaluate",
    "train_task",
    "load_checkpoint",
    "load_model",
    "plot_history",
    "plot_confusion",
    "count_parameters",
    "model_summary",
    "amp_dtype",
    "add_commands",
]

CHECKPOINT_FORMAT = 1
LAST, BEST = "last.pt", "best.pt"

# ------------------------------------------------------------------------------------------------
# The batch pipeline (notebook 05)
# ------------------------------------------------------------------------------------------------


class Normaliser(nn.Module):
    """``(features - mean) / std`` with statistics from the training split (notebook 04).

    ``mean``/``std`` are buffers shaped like one example's feature rows with a trailing time axis
    of 1, e.g. ``(40, 1)`` for 40 log-mel bands: every band gets its own statistics. Without
    statistics it is the identity.
    """

    def __init__(self, mean: Tensor | None = None, std: Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean if mean is not None else 0.0).float())
        self.register_buffer("std", torch.as_tensor(std if std is not None else 1.0).float())

    @property
    def fitted(self) -> bool:
        """True once real statistics are set."""
        return self.mean.dim() > 0

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"shape={tuple(self.mean.shape)}" if self.fitted else "identity"


_SPEC_AUGMENT_DEFAULT = {"freq_masks": 2, "freq_width": 5, "time_masks": 2, "time_width": 20}


class Pipeline(nn.Module):
    """Waveform batch -> (augmented) normalised features, entirely on the device (notebook 05).

    Per training batch, in this order: a random time shift of up to ``time_shift_ms`` (zero
    fill; done on int16 input); int16 -> float in [-1, 1]; speed perturbation by up to
    ``speed_change`` (:func:`speed_perturb`; 0 = off); with probability ``noise_prob`` a random
    slice of the noise bank added at a random gain in [0, ``noise_gain``] (rows labelled
    ``silence_label`` get noise of gain up to ``silence_gain`` every time, so "silence" covers
    quiet and loud backgrounds); the frontend (``make_frontend(feature)``: log-mel, MFCC or dB
    spectrogram); per-row normalisation with statistics of the clean training split; SpecAugment
    masks (``spec_augment`` dict, ``None`` or ``False`` to switch off; masked cells get 0 = the
    training mean). Evaluation batches get only the frontend and normalisation.
    ``infer_module(model)`` chains frontend, normaliser and model
    into the module that maps raw waveforms to logits.

    ``noise``: ``(K, >=16000)`` float or int16 noise slices, e.g. ``data.background_noise(root)``;
    ``None`` disables noise mixing. The bank lives on the device but is not saved in checkpoints.
    """

    def __init__(
        self,
        feature: dict[str, Any] | None = None,
        *,
        normalise: bool = True,
        time_shift_ms: float = 100.0,
        speed_change: float = 0.0,
        noise: np.ndarray | Tensor | None = None,
        noise_prob: float = 0.8,
        noise_gain: float = 0.1,
        silence_label: int | None = None,
        silence_gain: float = 1.0,
        spec_augment: dict[str, Any] | bool | None = True,
        sample_rate: int = 16000,
    ) -> None:
        super().__init__()
        self.frontend = make_frontend(feature)
        self.feature = frontend_config(self.frontend)
        self.normalise = bool(normalise)
        self.normaliser = Normaliser()
        if spec_augment is True:
            spec_augment = dict(_SPEC_AUGMENT_DEFAULT)
        self.augment = {
            "time_shift_ms": float(time_shift_ms),
            "speed_change": float(speed_change),
            "noise_prob": float(noise_prob),
            "noise_gain": float(noise_gain),
            "silence_label": silence_label,
            "silence_gain": float(silence_gain),
            "spec_augment": dict(spec_augment) if spec_augment else None,
            "sample_rate": int(sample_rate),
        }
        self.register_buffer("noise", torch.zeros(0, 0), persistent=False)
        if noise is not None:
            self.set_noise(noise)

    # -- construction helpers ------------------------------------------------------------------
    @classmethod
    def for_model(cls, model_name: str, model_kwargs: dict | None = None, **kwargs) -> Pipeline:
        """A pipeline with the frontend that model ``model_name`` expects (notebook 05)."""
        from .models import default_frontend

        return cls(default_frontend(model_name, **(model_kwargs or {})), **kwargs)

    def set_noise(self, noise: np.ndarray | Tensor | None) -> None:
        """Replace the noise bank (float in [-1, 1] or int16); ``None`` or empty disables it."""
        if noise is None or len(noise) == 0:
            self.noise = torch.zeros(0, 0, device=self.noise.device)
            return
        t = torch.as_tensor(np.asarray(noise) if not isinstance(noise, Tensor) else noise)
        if not t.is_floating_point():
            t = t.float() / 32768.0
        if t.dim() != 2:
            raise ValueError(f"noise bank must be (K, samples), got shape {tuple(t.shape)}")
        self.noise = t.float().to(self.noise.device)

    def state(self) -> dict[str, Any]:
        """What a checkpoint stores: feature config, normaliser statistics, augmentation."""
        return {
            "feature": dict(self.feature),
            "normalise": self.normalise,
            "mean": self.normaliser.mean.detach().cpu() if self.normaliser.fitted else None,
            "std": self.normaliser.std.detach().cpu() if self.normaliser.fitted else None,
            "augment": {
                k: (dict(v) if isinstance(v, dict) else v) for k, v in self.augment.items()
            },
        }

    @classmethod
    def from_state(
        cls, state: dict[str, Any], noise: np.ndarray | Tensor | None = None
    ) -> Pipeline:
        """Rebuild a pipeline saved with :meth:`state` (checkpoints; notebook 06)."""
        aug = dict(state.get("augment") or {})
        pipe = cls(
            state["feature"],
            normalise=state.get("normalise", True),
            noise=noise,
            **{k: v for k, v in aug.items() if k != "spec_augment"},
            spec_augment=aug.get("spec_augment") or None,
        )
        if state.get("mean") is not None:
            pipe.normaliser = Normaliser(state["mean"], state["std"])
        return pipe

    # -- statistics ------------------------------------------------------------------------------
    @property
    def fitted(self) -> bool:
        """True when the normaliser has statistics (or normalisation is off)."""
        return not self.normalise or self.normaliser.fitted

    @torch.no_grad()
    def fit_normaliser(self, waves: Tensor | Iterable, batch_size: int = 512) -> Pipeline:
        """Per-row mean/std of the clean features of ``waves`` (the training split) (notebook 05).

        ``waves``: an ``(N, T)`` int16/float tensor or NumPy array (e.g. ``split.audio``, a
        memmap: it is moved to the pipeline's device chunk by chunk), or an iterable of ``(x, y)``
        waveform batches. Accumulates in float64.
        """
        dev = self.noise.device
        total = sq = None
        count = 0
        if isinstance(waves, (Tensor, np.ndarray)):
            batches = (waves[i : i + batch_size] for i in range(0, len(waves), batch_size))
        else:
            batches = (b[0] for b in waves)
        for xb in batches:
            if not isinstance(xb, Tensor):
                xb = torch.from_numpy(np.ascontiguousarray(xb))
            feats = self.frontend(xb.to(dev, non_blocking=True)).double()  # (B, ..., F, T)
            dims = (0, feats.dim() - 1)
            s, s2 = feats.sum(dim=dims), feats.pow(2).sum(dim=dims)
            total = s if total is None else total + s
            sq = s2 if sq is None else sq + s2
            count += feats.shape[0] * feats.shape[-1]
        if not count:
            raise ValueError("cannot fit the normaliser on an empty training set")
        mean = total / count
        std = (sq / count - mean.pow(2)).clamp_min(0).sqrt().clamp_min(1e-5)
        self.normaliser = Normaliser(mean.float().unsqueeze(-1), std.float().unsqueeze(-1)).to(dev)
        return self

    # -- the batch transform ---------------------------------------------------------------------
    def features(self, x: Tensor) -> Tensor:
        """Clean features: frontend + normalisation, no augmentation (evaluation, inference)."""
        feats = self.frontend(x)
        return self.normaliser(feats) if self.normalise else feats

    def forward(
        self,
        x: Tensor,
        labels: Tensor | None = None,
        train: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``(B, T)`` int16/float waveforms -> ``(B, F, frames)`` features (augmented if train)."""
        if not train:
            return self.features(x)
        aug = self.augment
        shift = int(round(aug["sample_rate"] * aug["time_shift_ms"] / 1000.0))
        if shift > 0:  # first, on int16 if so: half the bytes (speed then scales it by <= 10 %)
            x = time_shift(x, shift, generator=generator)
        x = x.float() / 32768.0 if not x.is_floating_point() else x.float()
        if aug.get("speed_change", 0.0) > 0:
            x = speed_perturb(x, aug["speed_change"], generator=generator)
        if self.noise.numel() and aug["noise_prob"] > 0:
            prob, gain = aug["noise_prob"], aug["noise_gain"]
            if aug["silence_label"] is not None and labels is not None:
                is_sil = labels.to(x.device) == aug["silence_label"]  # always noise, louder
                prob = torch.where(is_sil, 1.0, prob)
                gain = torch.where(is_sil, aug["silence_gain"], gain)
            x = mix_noise(x, self.noise, prob, gain, generator=generator)
        feats = self.features(x)
        sa = aug["spec_augment"]
        if sa:
            mask_value = 0.0 if self.normalise else None
            feats = spec_augment(feats, **{"mask_value": mask_value, **sa}, generator=generator)
        return feats

    def infer_module(self, model: nn.Module) -> nn.Sequential:
        """``nn.Sequential(frontend, normaliser, model)``: raw waveform ``(B, T)`` -> logits."""
        norm = self.normaliser if self.normalise else Normaliser()
        return nn.Sequential(OrderedDict(frontend=self.frontend, normaliser=norm, model=model))

    def extra_repr(self) -> str:
        return f"augment={self.augment}, noise_bank={tuple(self.noise.shape)}"


# ------------------------------------------------------------------------------------------------
# Data sources: SplitData / tensor pairs on the device, or any iterable of batches
# ------------------------------------------------------------------------------------------------


def _is_split(data: Any) -> bool:
    return hasattr(data, "audio") and hasattr(data, "labels")


def _is_pair(data: Any) -> bool:
    return (
        isinstance(data, (tuple, list))
        and len(data) == 2
        and all(hasattr(t, "shape") and hasattr(t, "dtype") for t in data)
    )


def _to_device(a: np.ndarray | Tensor, device: torch.device, chunk: int = 8192) -> Tensor:
    """An array on ``device`` in one piece; numpy memmaps are streamed in chunks to a GPU."""
    if isinstance(a, Tensor):
        return a.to(device)
    if device.type == "cpu":
        with warnings.catch_warnings():  # a read-only memmap: shared, never written to
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(np.asarray(a))
    out = torch.empty(a.shape, dtype=torch.from_numpy(np.asarray(a[:1])).dtype, device=device)
    for i in range(0, len(a), chunk):
        part = torch.from_numpy(np.ascontiguousarray(a[i : i + chunk]))
        out[i : i + chunk].copy_(part.pin_memory() if torch.cuda.is_available() else part)
    return out


class _Source:
    """Batches of ``(x, y)`` on the device, from tensors held there or from an iterable."""

    def __init__(self, data: Any, device: torch.device) -> None:
        self.device = device
        self.iterable = None
        if _is_split(data) or _is_pair(data):
            x, y = (data.audio, data.labels) if _is_split(data) else data
            self.x = _to_device(x, device)
            if not isinstance(y, Tensor):
                y = np.asarray(y, dtype=np.int64)
            self.y = _to_device(y, device).long()
        else:
            self.iterable = data
        if self.iterable is None and len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        if self.iterable is None:
            return len(self.y)
        return len(getattr(self.iterable, "dataset", ()))

    def n_batches(self, batch_size: int, drop_last: bool) -> int | None:
        if self.iterable is not None:
            return len(self.iterable) if hasattr(self.iterable, "__len__") else None
        n = len(self.y)
        if drop_last and n >= batch_size:
            return n // batch_size
        return math.ceil(n / batch_size)

    def batches(
        self, batch_size: int, order: Tensor | None = None, drop_last: bool = False
    ) -> Iterator[tuple[Tensor, Tensor]]:
        if self.iterable is not None:
            for x, y in self.iterable:
                yield (
                    x.to(self.device, non_blocking=True),
                    torch.as_tensor(y).to(self.device, non_blocking=True).long(),
                )
            return
        n = len(self.y)
        nb = self.n_batches(batch_size, drop_last)
        if order is not None:
            order = order.to(self.device)
        for b in range(nb or 0):
            sl = slice(b * batch_size, min((b + 1) * batch_size, n))
            if order is None:
                yield self.x[sl], self.y[sl]
            else:
                idx = order[sl]
                yield self.x.index_select(0, idx), self.y.index_select(0, idx)


# ------------------------------------------------------------------------------------------------
# History, metrics
# ------------------------------------------------------------------------------------------------


class History(list):
    """Per-epoch records of :func:`fit` (a list of dicts) (notebook 03).

    ``history[i]`` is epoch ``i + 1``'s dict (``epoch``, ``train_loss``, ``train_acc``,
    ``val_loss``, ``val_acc``, ``lr``, ``seconds``, ``samples_per_s``); ``history['val_acc']`` is
    one column as a list. Accuracies are fractions in [0, 1].
    """

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return [r.get(key) for r in self]
        return super().__getitem__(key)

    @property
    def best_epoch(self) -> int | None:
        """Epoch (1-based) with the highest validation accuracy (first one on ties)."""
        scored = [(r["val_acc"], -r["epoch"]) for r in self if r.get("val_acc") is not None]
        return -max(scored)[1] if scored else None

    def train_seconds(self) -> float:
        """Total training time over all epochs (excluding validation)."""
        return float(sum(r.get("train_seconds", 0.0) for r in self))


@dataclass
class EvalResult:
    """Everything :func:`evaluate` measures on one dataset (notebook 03).

    ``confusion[i, j]`` counts clips of true class ``i`` predicted as ``j`` (rows: truth).
    ``precision``/``recall``/``f1``/``support`` are per class (0 where undefined).
    """

    classes: list[str]
    labels: np.ndarray
    predictions: np.ndarray
    probabilities: np.ndarray
    loss: float
    paths: list[str] | None = None
    confusion: np.ndarray = field(init=False)
    accuracy: float = field(init=False)
    precision: np.ndarray = field(init=False)
    recall: np.ndarray = field(init=False)
    f1: np.ndarray = field(init=False)
    support: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        c = len(self.classes)
        cm = np.zeros((c, c), dtype=np.int64)
        np.add.at(cm, (self.labels, self.predictions), 1)
        self.confusion = cm
        tp = np.diag(cm).astype(np.float64)
        pred_n, true_n = cm.sum(axis=0), cm.sum(axis=1)
        self.accuracy = float(tp.sum() / max(cm.sum(), 1))
        self.precision = np.divide(tp, pred_n, out=np.zeros(c), where=pred_n > 0)
        self.recall = np.divide(tp, true_n, out=np.zeros(c), where=true_n > 0)
        denom = self.precision + self.recall
        self.f1 = np.divide(
            2 * self.precision * self.recall, denom, out=np.zeros(c), where=denom > 0
        )
        self.support = true_n

    def most_confused(self, k: int = 5) -> list[tuple[str, str, int]]:
        """The ``k`` largest off-diagonal cells: ``(true class, predicted class, count)``."""
        off = self.confusion.copy()
        np.fill_diagonal(off, 0)
        flat = np.argsort(-off, axis=None, kind="stable")[:k]  # ties: row-major order
        pairs = [np.unravel_index(i, off.shape) for i in flat]
        return [(self.classes[i], self.classes[j], int(off[i, j])) for i, j in pairs if off[i, j]]

    def misclassified(self, k: int | None = None) -> np.ndarray:
        """Indices of wrong predictions, most confident mistakes first."""
        wrong = np.flatnonzero(self.predictions != self.labels)
        conf = self.probabilities[wrong, self.predictions[wrong]]
        return wrong[np.argsort(-conf, kind="stable")][:k]

    def report(self) -> str:
        """Accuracy, a per-class precision/recall/F1 table and the most confused pairs."""
        width = max(8, *(len(c) for c in self.classes))
        lines = [
            f"accuracy {100 * self.accuracy:.2f} % on {len(self.labels)} clips "
            f"(loss {self.loss:.4f})",
            f"{'class':<{width}}  precision  recall      f1  support",
        ]
        for i, c in enumerate(self.classes):
            lines.append(
                f"{c:<{width}}  {100 * self.precision[i]:8.1f}%  {100 * self.recall[i]:5.1f}%  "
                f"{100 * self.f1[i]:5.1f}%  {int(self.support[i]):7d}"
            )
        pairs = self.most_confused(5)
        if pairs:
            lines.append(
                "most confused (true -> predicted): "
                + ", ".join(f"{a} -> {b} ({n})" for a, b, n in pairs)
            )
        return "\n".join(lines)

    def confusion_text(self) -> str:
        """The confusion matrix as an aligned text table (rows: true class; columns: predicted)."""
        w = max(5, *(len(c) for c in self.classes), len(str(int(self.confusion.max(initial=0)))))
        head = " " * (w + 2) + " ".join(f"{c[:w]:>{w}}" for c in self.classes)
        rows = [
            f"{c:>{w}}  " + " ".join(f"{int(v):>{w}}" for v in self.confusion[i])
            for i, c in enumerate(self.classes)
        ]
        return "\n".join(["true \\ predicted", head, *rows])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (accuracy, per-class figures, confusion, most confused pairs)."""
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "n": int(len(self.labels)),
            "classes": list(self.classes),
            "per_class": {
                c: {
                    "precision": float(self.precision[i]),
                    "recall": float(self.recall[i]),
                    "f1": float(self.f1[i]),
                    "support": int(self.support[i]),
                }
                for i, c in enumerate(self.classes)
            },
            "confusion": self.confusion.tolist(),
            "most_confused": [list(p) for p in self.most_confused(10)],
        }


# ------------------------------------------------------------------------------------------------
# Optimisation helpers
# ------------------------------------------------------------------------------------------------


def amp_dtype(device: torch.device, amp: bool = True) -> torch.dtype | None:
    """Autocast dtype for ``device``: bf16 on Ampere+ GPUs, fp16 (+ GradScaler) on older ones
    such as the T4, ``None`` (full fp32) on CPU/MPS or when ``amp`` is off (notebook 05)."""
    if not amp or device.type != "cuda":
        return None
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def _make_optimizer(
    model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.dim() <= 1 else decay).append(p)  # no decay on biases and norms
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    name = name.lower()
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    raise ValueError(f"unknown optimizer {name!r}; choose 'adamw', 'adam' or 'sgd'")


class _LrSchedule:
    """Multiplier of the base learning rate per optimisation step: linear warm-up, then cosine
    decay to ``min_factor`` (or constant). A class, so LambdaLR checkpoints its settings."""

    def __init__(self, total: int, warmup: int, kind: str, min_factor: float) -> None:
        if kind not in ("cosine", "constant"):
            raise ValueError(f"unknown schedule {kind!r}; choose 'cosine' or 'constant'")
        self.total, self.warmup, self.kind, self.min_factor = total, warmup, kind, min_factor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.kind == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------


def _atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file, flush it to disk, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            try:
                os.fsync(f.fileno())
            except OSError:  # some network file systems (Drive's FUSE) refuse fsync
                pass
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _rng_state(batch_gen: torch.Generator, aug_gen: torch.Generator) -> dict[str, Any]:
    py = random.getstate()
    npy = np.random.get_state()  # noqa: NPY002 - the legacy global state is what users seed
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [npy[0], torch.from_numpy(npy[1].astype(np.int64)), npy[2], npy[3], npy[4]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "batch": batch_gen.get_state(),
        "augment": aug_gen.get_state(),
    }


def _set_rng_state(state: dict[str, Any], batch_gen: torch.Generator, aug_gen: torch.Generator):
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npy = state["numpy"]
    np.random.set_state((npy[0], npy[1].numpy().astype(np.uint32), *npy[2:]))  # noqa: NPY002
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    batch_gen.set_state(state["batch"].cpu())
    aug_gen.set_state(state["augment"].cpu())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit`, unpickling no code (notebook 05)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def _meta(ckpt: dict[str, Any]) -> dict[str, Any]:
    skip = ("state_dict", "optimizer", "scheduler", "scaler", "rng")
    return {k: v for k, v in ckpt.items() if k not in skip}


def load_model(
    path: str | Path, device: str | torch.device | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """A checkpoint's inference module: ``(B, 16000)`` waveform -> logits (notebooks 05, 06).

    Rebuilds the registered model (``models.build_model(model_name, len(classes),
    **model_kwargs)``), loads its weights and puts the checkpoint's frontend and normaliser in
    front; returns ``(module in eval mode on device, meta)`` where ``meta`` is the checkpoint
    without tensors of the training state (classes, feature, history, metrics, config, ...).
    """
    from .models import build_model

    device = torch.device(device) if device is not None else get_device()
    ckpt = load_checkpoint(path)
    if not ckpt.get("model_name"):
        raise ValueError(
            f"{path}: no 'model_name' in the checkpoint; pass model_name= (a name registered in "
            "models.MODELS) to fit() so that load_model can rebuild the model"
        )
    model = build_model(ckpt["model_name"], len(ckpt["classes"]), **ckpt.get("model_kwargs", {}))
    model.load_state_dict(ckpt["state_dict"])
    pipe = Pipeline.from_state(ckpt["pipeline"])
    infer = pipe.infer_module(model).to(device).eval()
    meta = _meta(ckpt)
    meta["path"] = str(path)
    return infer, meta


# ------------------------------------------------------------------------------------------------
# fit / evaluate
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def _predict(
    model: nn.Module,
    source: _Source,
    pipeline: Pipeline | None,
    batch_size: int,
    dtype: torch.dtype | None,
    progress: bool = False,
    desc: str = "evaluate",
) -> tuple[Tensor, Tensor]:
    """Logits (float32, CPU) and labels for every example of ``source``, in order."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    dev = source.device
    logits, labels = [], []
    total = source.n_batches(batch_size, drop_last=False)
    for xb, yb in tqdm(
        source.batches(batch_size), total=total, desc=desc, disable=not progress, leave=False
    ):
        inp = pipeline(xb, train=False) if pipeline is not None else xb
        with torch.autocast(dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            out = model(inp)
        logits.append(out.float())
        labels.append(yb)
    model.train(was_training)
    if not logits:
        raise ValueError("no examples to evaluate")
    return torch.cat(logits).cpu(), torch.cat(labels).cpu()


def evaluate(
    model: nn.Module,
    data: Any,
    pipeline: Pipeline | None = None,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    classes: Sequence[str] | None = None,
    amp: bool = False,
    progress: bool = False,
) -> EvalResult:
    """Accuracy, per-class precision/recall/F1, confusion matrix and predictions (notebooks 03-05).

    ``data``: a ``SplitData`` (int16 waveforms: give the training ``pipeline``, or pass the
    waveform->logits module of :func:`load_model` / ``pipeline.infer_module`` as ``model``), a
    ``(inputs, labels)`` pair, or an iterable of ``(x, y)`` batches. ``classes`` defaults to
    ``data.classes``. The model is left on ``device`` in eval mode.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device)
    if pipeline is not None:
        pipeline.to(device)
    source = _Source(data, device)
    logits, labels = _predict(
        model, source, pipeline, batch_size, amp_dtype(device, amp), progress=progress
    )
    model.eval()
    if classes is None:
        classes = getattr(data, "classes", None) or [str(i) for i in range(logits.shape[1])]
    loss = float(F.cross_entropy(logits, labels)) if len(labels) else float("nan")
    probs = torch.softmax(logits, dim=1).numpy()
    return EvalResult(
        classes=list(classes),
        labels=labels.numpy(),
        predictions=probs.argmax(axis=1),
        probabilities=probs,
        loss=loss,
        paths=list(getattr(data, "paths", []) or []) or None,
    )


def _model_device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return get_device()


def fit(
    model: nn.Module,
    train: Any,
    val: Any = None,
    *,
    pipeline: Pipeline | None = None,
    epochs: int = 10,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    optimizer: str = "adamw",
    momentum: float = 0.9,
    warmup_epochs: float = 0.0,
    schedule: str = "cosine",
    min_lr_factor: float = 0.0,
    label_smoothing: float = 0.0,
    batch_size: int = 128,
    eval_batch_size: int = 512,
    grad_clip: float | None = None,
    device: str | torch.device | None = None,
    amp: bool = True,
    compile: bool = False,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    seed: int = 0,
    progress: bool = True,
    restore_best: bool = True,
    model_name: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    classes: Sequence[str] | None = None,
    config: dict[str, Any] | None = None,
    deterministic: bool = False,
) -> History:
    """Train ``model`` -- the one training loop of notebooks 03, 04, 05 and the CLI.

    Data (``train``/``val``): a ``SplitData`` (int16 waveforms; the ``pipeline`` -- a default
    log-mel :class:`Pipeline` if ``None`` -- augments and computes features on the device), an
    ``(inputs, labels)`` pair of ready inputs (batched by index on the device; a given
    ``pipeline`` is applied to them as waveforms), or any iterable of ``(x, y)`` batches such as a
    DataLoader. ``val`` picks the best epoch; the test split is never touched here.

    Optimisation: ``optimizer`` 'adamw' | 'adam' | 'sgd' (momentum, Nesterov), weight decay on
    weights only (not biases/norms), per-step linear warm-up over ``warmup_epochs`` then 'cosine'
    decay to ``min_lr_factor * lr`` (or 'constant'), ``label_smoothing``, optional ``grad_clip``.
    On CUDA ``amp`` uses bf16 autocast (Ampere and newer) or fp16 with a GradScaler (T4, V100);
    ``compile`` wraps the model in ``torch.compile``. The features are always computed in fp32.

    Checkpoints: with ``checkpoint_dir``, ``last.pt`` is written atomically after every epoch
    (weights, optimizer, scheduler, GradScaler, RNG states, history, best accuracy, pipeline) and
    ``best.pt`` at each new best validation accuracy; with ``resume`` (default) a later call with
    the same directory continues after the last finished epoch and reaches the same final state
    as an uninterrupted run. ``model_name``/``model_kwargs`` (a ``models.build_model`` name;
    defaults: ``model.model_name``/``model.model_kwargs`` if set) let :func:`load_model` rebuild it.

    Returns the :class:`History`; the model ends with the best-validation weights when
    ``restore_best`` (else the last ones), in eval mode.
    """
    from tqdm.auto import tqdm

    device = torch.device(device) if device is not None else get_device()
    if deterministic and device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds the legacy global state that user code may use
    torch.manual_seed(seed)
    batch_gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator(device=device).manual_seed(seed + 1)

    model_name = model_name or getattr(model, "model_name", None)
    model_kwargs = dict(
        model_kwargs if model_kwargs is not None else getattr(model, "model_kwargs", {}) or {}
    )
    if classes is None:
        classes = getattr(train, "classes", None)
    classes = list(classes) if classes is not None else None

    if pipeline is None and _is_split(train):
        pipeline = Pipeline()
    train_src = _Source(train, device)
    val_src = _Source(val, device) if val is not None else None
    if pipeline is not None:
        pipeline.to(device)
        if not pipeline.fitted:
            pipeline.fit_normaliser(
                train_src.x if train_src.iterable is None else train_src.iterable
            )

    model.to(device)
    step_model = torch.compile(model) if compile else model
    n_batches = train_src.n_batches(batch_size, drop_last=True)
    if n_batches is None:
        raise ValueError("the training iterable needs a len() (steps per epoch for the schedule)")
    opt = _make_optimizer(model, optimizer, lr, weight_decay, momentum)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        _LrSchedule(
            epochs * n_batches, int(round(warmup_epochs * n_batches)), schedule, min_lr_factor
        ),
    )
    dtype = amp_dtype(device, amp)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    run_config = {
        "epochs": epochs, "lr": lr, "weight_decay": weight_decay, "optimizer": optimizer,
        "momentum": momentum, "warmup_epochs": warmup_epochs, "schedule": schedule,
        "min_lr_factor": min_lr_factor, "label_smoothing": label_smoothing,
        "batch_size": batch_size, "grad_clip": grad_clip, "amp": str(dtype) if dtype else None,
        "compile": compile, "seed": seed, "device": str(device),
        "params": count_parameters(model), **(config or {}),
    }  # fmt: skip

    history = History()
    best_acc, best_epoch, best_state = -math.inf, 0, None
    start = 0
    ckdir = Path(checkpoint_dir).expanduser() if checkpoint_dir is not None else None
    if ckdir is not None:
        ckdir.mkdir(parents=True, exist_ok=True)
        for stale in (*ckdir.glob(f".{LAST}.tmp*"), *ckdir.glob(f".{BEST}.tmp*")):
            stale.unlink(missing_ok=True)  # left by a process killed while saving
        if resume and (ckdir / LAST).is_file():
            ck = load_checkpoint(ckdir / LAST)  # on the CPU: RNG states must stay there
            _check_resumable(ck, model, model_name, classes, ckdir)
            model.load_state_dict(ck["state_dict"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            if ck.get("scaler"):
                scaler.load_state_dict(ck["scaler"])
            if pipeline is not None and ck.get("pipeline"):
                st = ck["pipeline"]
                if st.get("mean") is not None:
                    pipeline.normaliser = Normaliser(st["mean"], st["std"]).to(device)
            history = History(ck["history"])
            best_acc, best_epoch = ck["best_val_acc"], ck.get("best_epoch", 0)
            if (ckdir / BEST).is_file():
                best_state = load_checkpoint(ckdir / BEST)["state_dict"]
            start = int(ck["epoch"])
            if ck.get("config", {}).get("epochs") not in (None, epochs):
                warnings.warn(
                    f"resuming a run planned for {ck['config']['epochs']} epochs with "
                    f"epochs={epochs}: the learning-rate schedule changes",
                    stacklevel=2,
                )
            _set_rng_state(ck["rng"], batch_gen, aug_gen)
            if progress:
                tqdm.write(f"resumed from {ckdir / LAST} after epoch {start}/{epochs}")

    def checkpoint(epoch: int) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "model_name": model_name,
            "model_kwargs": model_kwargs,
            "classes": classes,
            "feature": dict(pipeline.feature) if pipeline is not None else None,
            "pipeline": pipeline.state() if pipeline is not None else None,
            "state_dict": model.state_dict(),
            "epoch": epoch,
            "history": [dict(r) for r in history],
            "best_val_acc": best_acc,
            "best_epoch": best_epoch,
            "metrics": {},
            "config": run_config,
        }

    for epoch in range(start, epochs):
        model.train()
        t0 = time.perf_counter()
        order = (
            torch.randperm(len(train_src), generator=batch_gen)
            if train_src.iterable is None
            else None
        )
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        seen = 0
        bar = tqdm(
            total=n_batches,
            desc=f"epoch {epoch + 1}/{epochs}",
            disable=not progress,
            leave=False,
            dynamic_ncols=True,
        )
        every = 1 if device.type == "cpu" else max(1, n_batches // 25)
        for i, (xb, yb) in enumerate(train_src.batches(batch_size, order, drop_last=True)):
            with torch.no_grad():
                inp = (
                    pipeline(xb, yb, train=True, generator=aug_gen) if pipeline is not None else xb
                )
            with torch.autocast(
                device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                logits = step_model(inp)
            loss = criterion(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip:
                scaler.unscale_(opt)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            n = yb.shape[0]
            seen += n
            loss_sum += loss.detach().double() * n
            correct += (logits.detach().argmax(1) == yb).sum()
            bar.update(1)
            if progress and ((i + 1) % every == 0 or i + 1 == n_batches):
                bar.set_postfix(
                    loss=f"{loss_sum.item() / seen:.3f}",
                    acc=f"{100 * correct.item() / seen:.1f}%",
                    refresh=False,
                )
        bar.close()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_s = time.perf_counter() - t0
        train_loss = loss_sum.item() / max(seen, 1)
        if not math.isfinite(train_loss):
            raise FloatingPointError(
                f"epoch {epoch + 1}: the training loss is {train_loss}; lower the learning rate "
                "or switch off mixed precision (amp=False)"
            )
        rec: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_acc": correct.item() / max(seen, 1),
            "val_loss": None,
            "val_acc": None,
            "lr": opt.param_groups[0]["lr"],
            "train_seconds": train_s,
            "samples_per_s": seen / train_s if train_s > 0 else float("nan"),
        }
        if val_src is not None:
            logits_v, labels_v = _predict(model, val_src, pipeline, eval_batch_size, dtype)
            rec["val_loss"] = float(F.cross_entropy(logits_v, labels_v))
            rec["val_acc"] = float((logits_v.argmax(1) == labels_v).double().mean())
        rec["seconds"] = time.perf_counter() - t0
        history.append(rec)
        score = rec["val_acc"] if rec["val_acc"] is not None else -rec["train_loss"]
        improved = score > best_acc
        if improved:
            best_acc, best_epoch = score, epoch + 1
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if ckdir is not None:
            if improved:  # best first: a crash in between is repaired by the re-run epoch
                _atomic_save(checkpoint(epoch + 1), ckdir / BEST)
            ck = checkpoint(epoch + 1)
            ck.update(
                optimizer=opt.state_dict(),
                scheduler=sched.state_dict(),
                scaler=scaler.state_dict() if scaler.is_enabled() else None,
                rng=_rng_state(batch_gen, aug_gen),
            )
            _atomic_save(ck, ckdir / LAST)
        if progress:
            val = (
                f" | val loss {rec['val_loss']:.4f} acc {100 * rec['val_acc']:.2f}%"
                if rec["val_acc"] is not None
                else ""
            )
            tqdm.write(
                f"epoch {epoch + 1:>3}/{epochs} | train loss {train_loss:.4f} acc "
                f"{100 * rec['train_acc']:.2f}%{val} | lr {rec['lr']:.2e} | {train_s:.1f} s "
                f"({rec['samples_per_s']:.0f} samples/s){' *' if improved else ''}"
            )
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history


def _check_resumable(ck: dict, model: nn.Module, name: str | None, classes, ckdir: Path) -> None:
    hint = f"use a new checkpoint_dir (or resume=False to overwrite {ckdir})"
    if ck.get("model_name") != name:
        raise ValueError(
            f"{ckdir / LAST} holds model {ck.get('model_name')!r}, not {name!r}: {hint}"
        )
    if classes is not None and ck.get("classes") not in (None, list(classes)):
        raise ValueError(f"{ckdir / LAST} was trained on classes {ck['classes']}: {hint}")
    mine = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in ck["state_dict"].items()}
    if mine != theirs:
        raise ValueError(f"{ckdir / LAST} holds a model of another shape: {hint}")


# ------------------------------------------------------------------------------------------------
# Plots and model inspection
# ------------------------------------------------------------------------------------------------


def plot_history(history: Sequence[dict], title: str | None = None):
    """Loss and accuracy per epoch, training vs validation (notebook 03). Returns the figure."""
    import matplotlib.pyplot as plt

    hist = History(history)
    ep = hist["epoch"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    ax1.plot(ep, hist["train_loss"], "o-", label="training")
    ax2.plot(ep, [100 * a for a in hist["train_acc"]], "o-", label="training")
    if any(v is not None for v in hist["val_acc"]):
        ax1.plot(ep, hist["val_loss"], "s-", label="validation")
        ax2.plot(ep, [100 * a for a in hist["val_acc"]], "s-", label="validation")
        if hist.best_epoch:
            ax2.axvline(
                hist.best_epoch, color="grey", ls=":", label=f"best (epoch {hist.best_epoch})"
            )
    ax1.set(xlabel="epoch", ylabel="loss (cross-entropy, nats)", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion(
    cm: np.ndarray | EvalResult,
    classes: Sequence[str] | None = None,
    normalize: bool = True,
    title: str | None = None,
    ax=None,
):
    """Confusion matrix heat map, rows = true class, columns = predicted (notebook 03).

    ``normalize`` colours each row by recall (% of that class's clips); cells show counts. Drawn
    in the conventional matrix orientation (first class at the top-left), with a colour bar.
    """
    import matplotlib.pyplot as plt

    if isinstance(cm, EvalResult):
        classes = classes or cm.classes
        cm = cm.confusion
    cm = np.asarray(cm)
    classes = list(classes) if classes is not None else [str(i) for i in range(len(cm))]
    rows = cm.sum(axis=1, keepdims=True)
    shown = 100 * cm / np.maximum(rows, 1) if normalize else cm
    if ax is None:
        size = max(4.0, 0.55 * len(classes) + 2)
        _, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(
        shown, cmap="Blues", origin="upper", vmin=0, vmax=100 if normalize else None, aspect="equal"
    )
    ax.figure.colorbar(im, ax=ax, label="% of the true class" if normalize else "clips")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted class", ylabel="true class", title=title or "confusion matrix")
    if len(classes) <= 20:
        for i in range(len(classes)):
            for j in range(len(classes)):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        str(int(cm[i, j])),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if shown[i, j] > 0.6 * shown.max() else "black",
                    )
    ax.figure.tight_layout()
    return ax.figure


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters (notebook 03)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_summary(model: nn.Module, input_size: Sequence[int], depth: int = 3, **kwargs):
    """torchinfo summary (layers, output shapes, parameters) for one input shape (notebook 03).

    ``input_size`` includes the batch dimension, e.g. ``(1, 40, 101)``. Printing the result
    gives the table.
    """
    from torchinfo import summary

    return summary(
        model,
        input_size=tuple(input_size),
        depth=depth,
        col_names=kwargs.pop("col_names", ("output_size", "num_params", "mult_adds")),
        device=_model_device(model),
        verbose=0,
        **kwargs,
    )


# ------------------------------------------------------------------------------------------------
# Recipes and the one-call training used by notebook 05, the CLI and the benchmark
# ------------------------------------------------------------------------------------------------

#: Default training settings per model (what ``python utils.py train`` uses unless overridden).
RECIPES: dict[str, dict[str, Any]] = {
    "bcresnet": {  # checked on the real 12-class clips (benchmarks/bench_kws.py, part c)
        "model_kwargs": {"width": 4},  # 89,884 parameters for 12 classes
        "epochs": 60, "batch_size": 64, "optimizer": "adamw", "lr": 6e-3,
        "weight_decay": 1e-3, "warmup_epochs": 2, "label_smoothing": 0.05,
        "augment": {"spec_augment": True, "speed_change": 0.1},
    },
    "cnnet": {  # checked on the real yes/no clips (benchmarks/bench_models.py, part yesno)
        "epochs": 20, "batch_size": 32, "optimizer": "adamw", "lr": 2e-3,
        "weight_decay": 1e-2, "warmup_epochs": 1, "label_smoothing": 0.0,
        "augment": {"spec_augment": {"freq_masks": 2, "freq_width": 20, "time_masks": 2,
                                      "time_width": 10}},
    },
    "cnnet_original": {
        "epochs": 15, "batch_size": 15, "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0,
        "warmup_epochs": 0, "label_smoothing": 0.0, "schedule": "constant",
        "augment": {"spec_augment": False, "time_shift_ms": 0.0, "noise_prob": 0.0},
    },
    "mfcc1d": {
        "epochs": 30, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
        "warmup_epochs": 0, "label_smoothing": 0.0,
        "augment": {"spec_augment": False},
    },
    "mfcc1d_plus": {
        "epochs": 30, "batch_size": 64, "optimizer": "adamw", "lr": 2e-3,
        "weight_decay": 1e-2, "warmup_epochs": 1, "label_smoothing": 0.05,
        "augment": {"spec_augment": {"freq_masks": 1, "freq_width": 4, "time_masks": 2,
                                      "time_width": 10}},
    },
}  # fmt: skip


def default_recipe(model_name: str) -> dict[str, Any]:
    """A copy of the default training settings for ``model_name`` (notebook 05)."""
    base = RECIPES.get(model_name, RECIPES["cnnet"])
    out = json.loads(json.dumps(base))
    out.setdefault("model_kwargs", {})
    out.setdefault("schedule", "cosine")
    return out


@dataclass
class RunResult:
    """What :func:`train_task` returns (notebook 05)."""

    model: nn.Module
    pipeline: Pipeline
    history: History
    test: EvalResult
    metrics: dict[str, Any]
    splits: dict[str, Any]
    checkpoint_dir: Path | None


def train_task(
    data: str | Path,
    task: str = "12",
    model: str = "bcresnet",
    *,
    width: float | None = None,
    model_kwargs: dict[str, Any] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    out: str | Path | None = None,
    splits: dict[str, Any] | None = None,
    noise: np.ndarray | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    amp: bool = True,
    compile: bool = False,
    resume: bool = True,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    **overrides: Any,
) -> RunResult:
    """Load a task, train a registered model with its recipe, test it once (notebook 05, CLI).

    ``data``: a dataset name or folder (``data.resolve_dataset``); ``splits``/``noise`` skip the
    loading when the caller already has them. The recipe is :func:`default_recipe` with every
    non-``None`` argument and ``overrides`` (any :func:`fit` keyword, or ``augment`` dict) on top.
    With ``out``: checkpoints there (resumed if present) and ``metrics.json`` with test accuracy,
    per-class figures, the confusion matrix, parameters and training time.
    """
    from .data import background_noise, load_task, resolve_dataset
    from .models import build_model, default_frontend

    device = torch.device(device) if device is not None else get_device()
    root = resolve_dataset(data)
    if splits is None:
        splits = load_task(root, task, seed=0, cache_dir=cache_dir, progress=progress)
    if noise is None:
        noise = background_noise(root, "train")
    recipe = default_recipe(model)
    mkw = dict(recipe.pop("model_kwargs"))
    mkw.update(model_kwargs or {})
    if width is not None:
        mkw["width"] = width
    for key, val in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
        if val is not None:
            recipe[key] = val
    augment = dict(recipe.pop("augment", {}))
    augment.update(overrides.pop("augment", {}) or {})
    recipe.update(overrides)
    classes = list(splits["train"].classes)
    if "_silence_" in classes:
        augment.setdefault("silence_label", classes.index("_silence_"))
    torch.manual_seed(seed)  # the initial weights depend on the seed too, not on earlier draws
    try:
        net = build_model(model, len(classes), **mkw)
    except TypeError as e:
        raise ValueError(f"model {model!r} does not accept {sorted(mkw)}: {e}") from e
    pipe = Pipeline(default_frontend(model, **mkw), noise=noise, **augment)
    out_dir = Path(out).expanduser() if out is not None else None
    t0 = time.perf_counter()
    history = fit(
        net, splits["train"], splits["validation"], pipeline=pipe, device=device, amp=amp,
        compile=compile, checkpoint_dir=out_dir, resume=resume, seed=seed, progress=progress,
        model_name=model, model_kwargs=mkw, classes=classes,
        config={"task": task, "data": str(root), "augment": augment}, **recipe,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    test = evaluate(net, splits["test"], pipe, device=device)
    metrics = {
        "task": task,
        "model": model,
        "model_kwargs": mkw,
        "params": count_parameters(net),
        "data": str(root),
        "n_train": len(splits["train"]),
        "n_validation": len(splits["validation"]),
        "n_test": len(splits["test"]),
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "best_epoch": history.best_epoch,
        "best_val_acc": max((v for v in history["val_acc"] if v is not None), default=None),
        "epochs": len(history),
        "train_seconds": history.train_seconds(),
        "wall_seconds_this_call": wall,
        "samples_per_s": float(np.median(history["samples_per_s"])) if len(history) else None,
        "device": str(device),
        "recipe": {**recipe, "augment": augment},
        "seed": seed,
        "test": test.to_dict(),
    }
    if out_dir is not None:
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
        best = out_dir / BEST
        if best.is_file():
            ck = load_checkpoint(best)
            ck["metrics"] = {k: v for k, v in metrics.items() if k != "recipe"}
            _atomic_save(ck, best)
    return RunResult(net, pipe, history, test, metrics, splits, out_dir)


# ------------------------------------------------------------------------------------------------
# Command line: python utils.py train / evaluate
# ------------------------------------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace) -> int:
    from .env import env_report

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else get_device()
    print(env_report(device))
    out = args.out or Path("runs") / f"{args.model}_{args.task}"
    overrides = {k: v for k, v in {
        "weight_decay": args.weight_decay, "optimizer": args.optimizer,
        "warmup_epochs": args.warmup_epochs, "label_smoothing": args.label_smoothing,
    }.items() if v is not None}  # fmt: skip
    res = train_task(
        args.data, args.task, args.model, width=args.width, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, out=out, seed=args.seed, device=device,
        amp=not args.no_amp, compile=args.compile, resume=not args.no_resume,
        progress=not args.quiet, cache_dir=args.cache_dir, **overrides,
    )  # fmt: skip
    m = res.metrics
    print(res.test.report())
    print(res.test.confusion_text())
    print(
        f"test accuracy {100 * m['test_accuracy']:.2f} % | {m['params']:,} parameters | "
        f"{m['epochs']} epochs in {m['train_seconds']:.0f} s ({m['samples_per_s']:.0f} samples/s)"
    )
    print(f"wrote {out / LAST}, {out / BEST}, {out / 'metrics.json'}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .data import TASKS, load_split, resolve_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else get_device()
    infer, meta = load_model(args.checkpoint, device)
    classes = list(meta["classes"])
    task = args.task or (meta.get("config") or {}).get("task")
    if task is None:
        task = next((t for t, c in TASKS.items() if list(c) == classes), None)
    if task is None:
        raise ValueError(f"cannot tell the task of {args.checkpoint}; pass --task")
    root = resolve_dataset(args.data)
    assign = "test" if args.split == "all" else "auto"
    split = load_split(
        root, task, "test", assign=assign, cache_dir=args.cache_dir, progress=not args.quiet
    )
    if list(split.classes) != classes:
        raise ValueError(f"the data's classes {split.classes} differ from the model's {classes}")
    res = evaluate(infer, split, device=device, batch_size=args.batch_size, classes=classes)
    which = "every clip" if args.split == "all" else "the test split"
    print(f"{args.checkpoint} on {root} ({which}, task {task}):")
    print(res.report())
    print(res.confusion_text())
    if args.json:
        d = {
            "checkpoint": str(args.checkpoint),
            "data": str(root),
            "split": args.split,
            "task": task,
            **res.to_dict(),
        }
        Path(args.json).write_text(json.dumps(d, indent=2))
        print(f"wrote {args.json}")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``evaluate`` to ``python utils.py`` (README; notebook 05)."""
    p = subparsers.add_parser(
        "train", help="train a model on a task and test it (writes last.pt, best.pt, metrics.json)"
    )
    p.add_argument("--task", default="12", choices=["yesno", "10", "12", "35"])
    p.add_argument(
        "--model", default="bcresnet", help="bcresnet, cnnet, cnnet_original, mfcc1d, mfcc1d_plus"
    )
    p.add_argument(
        "--data", default="demo", help="dataset name (demo, real, speech_commands_v0.02) or folder"
    )
    p.add_argument("--out", type=Path, default=None, help="output folder (default runs/MODEL_TASK)")
    p.add_argument("--epochs", type=int, default=None, help="default: the model's recipe")
    p.add_argument("--width", type=float, default=None, help="BC-ResNet width (tau)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--optimizer", choices=["adamw", "adam", "sgd"], default=None)
    p.add_argument("--warmup-epochs", type=float, default=None)
    p.add_argument("--label-smoothing", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for PyTorch (1 is fastest on a busy machine)")  # fmt: skip
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-amp", action="store_true", help="full fp32 on CUDA")
    p.add_argument("--no-resume", action="store_true", help="start over even if OUT/last.pt exists")
    p.add_argument("--cache-dir", type=Path, default=None, help="int16 array cache folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)

    p = subparsers.add_parser(
        "evaluate", help="accuracy, per-class figures and confusion matrix of a checkpoint"
    )
    p.add_argument("checkpoint", type=Path, help="a best.pt / last.pt written by train")
    p.add_argument("--data", required=True, help="dataset name or folder (Speech Commands layout)")
    p.add_argument(
        "--split",
        choices=["test", "all"],
        default="test",
        help="test: the test split (official list or speaker hash); all: every clip "
        "(e.g. the official test-set archive)",
    )
    p.add_argument("--task", default=None, help="default: the checkpoint's task")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_evaluate)


if __name__ == "__main__":  # pragma: no cover
    _p = argparse.ArgumentParser(prog="python -m audiocourse.train")
    add_commands(_p.add_subparsers(dest="command", required=True))
    _a = _p.parse_args()
    sys.exit(_a.func(_a))
