"""Training: the batch pipeline, the one loop, checkpoints, evaluation, recipes (notebooks 03-05).

The loop a learner would write (``train_one_epoch``, ``validate``, ``save_checkpoint``,
``resume_checkpoint``), plus what a long Colab run needs; the cached int16 split moves to the
device once and every batch is augmented and turned into features there.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .data import background_noise, load_task, resolve_dataset
from .env import get_device, set_seed
from .features import (
    frontend_config,
    make_frontend,
    mix_noise,
    spec_augment,
    speed_perturb,
    time_shift,
)
from .models import build_model, model_frontend

__all__ = [
    "Pipeline", "amp_dtype", "fit", "evaluate", "record_test", "load_checkpoint", "load_model",
    "plot_history", "plot_confusion", "count_parameters", "model_summary", "RECIPES",
    "default_recipe", "train_task",
]  # fmt: skip

LAST, BEST = "last.pt", "best.pt"
_SPEC_AUGMENT = {"freq_masks": 2, "freq_width": 5, "time_masks": 2, "time_width": 20}


# --- The batch pipeline (notebook 05) ------------------------------------------------------------
class Normaliser(nn.Module):
    """``(features - mean) / std`` per feature row, statistics from the training split; or, with
    ``per_clip``, one mean and std per clip (and channel), so that a clip's loudness and the
    microphone's level drop out and no statistics are stored."""

    def __init__(
        self, mean: Tensor | None = None, std: Tensor | None = None, per_clip: bool = False
    ) -> None:
        super().__init__()
        self.per_clip = per_clip
        self.register_buffer("mean", torch.as_tensor(0.0 if mean is None else mean).float())
        self.register_buffer("std", torch.as_tensor(1.0 if std is None else std).float())

    def extra_repr(self) -> str:
        if self.per_clip or self.mean.dim() == 0:
            return "per clip" if self.per_clip else "per row, not fitted yet (identity)"
        return f"per row: {self.mean.numel()} means and stds of the training split"

    def forward(self, x: Tensor) -> Tensor:
        if self.per_clip:  # over (feature rows, frames): a gain change shifts every log cell alike
            mean = x.mean(dim=(-2, -1), keepdim=True)
            return (x - mean) / x.std(dim=(-2, -1), keepdim=True).clamp_min(1e-5)
        return (x - self.mean) / self.std


class Pipeline(nn.Module):
    """Waveform batch -> (augmented) normalised features, all on the device (notebook 05).

    Training batches, in order: time shift by up to ``time_shift_ms`` (on int16), int16 -> float,
    speed perturbation by up to ``speed_change``, background noise (probability ``noise_prob``,
    gain up to ``noise_gain``; rows labelled ``silence_label`` always, up to ``silence_gain``),
    the frontend, normalisation, SpecAugment (``spec_augment``: True, a dict, or False).
    Evaluation batches get only the frontend and normalisation. ``normalise``: ``"band"``
    (per feature row, training-split statistics) or ``"clip"`` (each clip on its own).
    """

    def __init__(
        self,
        feature: dict[str, Any] | None = None,
        *,
        time_shift_ms: float = 100.0,
        speed_change: float = 0.0,
        noise: np.ndarray | Tensor | None = None,
        noise_prob: float = 0.8,
        noise_gain: float = 0.1,
        silence_label: int | None = None,
        silence_gain: float = 1.0,
        spec_augment: dict[str, Any] | bool | None = True,
        normalise: str = "band",
    ) -> None:
        super().__init__()
        if normalise not in ("band", "clip"):
            raise ValueError(f"normalise must be 'band' or 'clip', got {normalise!r}")
        self.frontend = make_frontend(feature)
        self.feature = frontend_config(self.frontend)
        self.normalise = normalise
        self.normaliser = Normaliser(per_clip=normalise == "clip")
        sa = dict(_SPEC_AUGMENT) if spec_augment is True else dict(spec_augment or {}) or None
        self.augment = {"time_shift_ms": float(time_shift_ms), "speed_change": float(speed_change),
                        "noise_prob": float(noise_prob), "noise_gain": float(noise_gain),
                        "silence_label": silence_label, "silence_gain": float(silence_gain),
                        "spec_augment": sa}
        self.register_buffer("noise", torch.zeros(0, 0), persistent=False)
        self.set_noise(noise)

    def set_noise(self, noise: np.ndarray | Tensor | None) -> None:
        """Replace the noise bank, ``(K, samples)`` float or int16; ``None`` disables it."""
        t = torch.zeros(0, 0) if noise is None or len(noise) == 0 else torch.as_tensor(noise)
        if t.dim() != 2:
            raise ValueError(f"noise bank must be (K, samples), got shape {tuple(t.shape)}")
        self.noise = (t.float() if t.is_floating_point() else t.float() / 32768).to(self.noise)

    def state(self) -> dict[str, Any]:
        """What a checkpoint stores: feature config, normaliser statistics, augmentation."""
        fitted = self.normaliser.mean.dim() > 0
        return {"feature": dict(self.feature), "augment": dict(self.augment),
                "normalise": self.normalise,
                "mean": self.normaliser.mean.cpu() if fitted else None,
                "std": self.normaliser.std.cpu() if fitted else None}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Pipeline:
        """Rebuild a pipeline saved with :meth:`state` (checkpoints; notebook 06)."""
        pipe = cls(state["feature"], normalise=state.get("normalise", "band"),
                   **state.get("augment", {}))
        if state.get("mean") is not None and pipe.normalise == "band":
            pipe.normaliser = Normaliser(state["mean"], state["std"])
        return pipe

    @torch.no_grad()
    def fit_normaliser(self, waves: Tensor | np.ndarray | Iterable, batch: int = 512) -> Pipeline:
        """Per-row mean/std of the clean features of the training waveforms (notebook 05);
        nothing to fit when each clip is normalised on its own."""
        if self.normalise == "clip":
            return self
        dev, total, sq, count = self.noise.device, 0.0, 0.0, 0
        if isinstance(waves, Tensor | np.ndarray):
            w = waves
            waves = ((w[i : i + batch],) for i in range(0, len(w), batch))
        for xb, *_ in waves:
            x = xb if isinstance(xb, Tensor) else torch.from_numpy(np.ascontiguousarray(xb))
            f = self.frontend(x.to(dev)).double()  # (B, ..., F, T)
            dims = (0, f.dim() - 1)
            total, sq = total + f.sum(dims), sq + f.pow(2).sum(dims)
            count += f.shape[0] * f.shape[-1]
        if not count:
            raise ValueError("cannot fit the normaliser on an empty training set")
        mean = total / count
        std = (sq / count - mean**2).clamp_min(0).sqrt().clamp_min(1e-5)
        self.normaliser = Normaliser(mean.float()[..., None], std.float()[..., None]).to(dev)
        return self

    def features(self, x: Tensor) -> Tensor:
        """Clean features: frontend + normalisation (evaluation, inference)."""
        return self.normaliser(self.frontend(x))

    def forward(
        self, x: Tensor, labels: Tensor | None = None, train: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """``(B, T)`` int16/float waveforms -> ``(B, F, frames)`` features (augmented if train)."""
        if not train:
            return self.features(x)
        a = self.augment
        shift = round(16 * a["time_shift_ms"])  # 16 samples per ms at 16 kHz
        if shift > 0:  # first, on int16: half the bytes to move
            x = time_shift(x, shift, generator=generator)
        x = x.float() if x.is_floating_point() else x.float() / 32768
        if a["speed_change"] > 0:
            x = speed_perturb(x, a["speed_change"], generator=generator)
        if self.noise.numel() and a["noise_prob"] > 0:
            prob, gain = a["noise_prob"], a["noise_gain"]
            if a["silence_label"] is not None and labels is not None:
                is_sil = labels.to(x.device) == a["silence_label"]  # always noise, louder
                prob = torch.where(is_sil, 1.0, prob)
                gain = torch.where(is_sil, a["silence_gain"], gain)
            x = mix_noise(x, self.noise, prob, gain, generator=generator)
        feats = self.features(x)
        if a["spec_augment"]:  # masked cells get 0: the mean (of the training split, or the clip)
            feats = spec_augment(feats, mask_value=0.0, **a["spec_augment"], generator=generator)
        return feats

    def infer_module(self, model: nn.Module) -> nn.Sequential:
        """``Sequential(frontend, normaliser, model)``: raw waveform ``(B, T)`` -> logits."""
        parts = OrderedDict(frontend=self.frontend, normaliser=self.normaliser, model=model)
        return nn.Sequential(parts)


# --- Batches on the device, history, metrics -----------------------------------------------------
class _Source:
    """``(x, y)`` batches on the device: a split or ``(inputs, labels)`` pair held there, or
    any iterable of batches (a DataLoader)."""

    def __init__(self, data: Any, device: torch.device) -> None:
        self.device, self.iterable, self.draw = device, None, None
        if getattr(data, "unknown_per_epoch", 0):  # (label, rows per epoch): a fresh draw
            self.draw = (data.classes.index("_unknown_"), data.unknown_per_epoch)
        if hasattr(data, "audio"):
            data = (data.audio, data.labels)
        if isinstance(data, tuple | list) and len(data) == 2 and hasattr(data[0], "shape"):
            with warnings.catch_warnings():  # a read-only memmap: shared, never written to
                warnings.simplefilter("ignore", UserWarning)
                x, y = (a if isinstance(a, Tensor) else torch.as_tensor(a) for a in data)
            self.x, self.y = x.to(device), y.to(device).long()
            if len(self.x) != len(self.y):
                raise ValueError(f"{len(self.x)} inputs but {len(self.y)} labels")
        else:
            self.iterable = data

    def epoch_order(self, gen: torch.Generator) -> Tensor:
        """A shuffled epoch: every row, or every other row plus a fresh draw of ``_unknown_``."""
        if self.draw is None:
            return torch.randperm(len(self.y), generator=gen)
        is_unk = (self.y == self.draw[0]).cpu()
        unk, rest = is_unk.nonzero().flatten(), (~is_unk).nonzero().flatten()
        rows = torch.cat([rest, unk[torch.randperm(len(unk), generator=gen)[: self.draw[1]]]])
        return rows[torch.randperm(len(rows), generator=gen)]

    def n_batches(self, batch_size: int, drop_last: bool = False, n: int | None = None) -> int:
        if self.iterable is not None:
            return len(self.iterable)
        n = len(self.y) if n is None else n
        return n // batch_size if drop_last and n >= batch_size else math.ceil(n / batch_size)

    def batches(
        self, batch_size: int, order: Tensor | None = None, drop_last: bool = False
    ) -> Iterator[tuple[Tensor, Tensor]]:
        if self.iterable is not None:
            for x, y in self.iterable:
                yield x.to(self.device), torch.as_tensor(y).to(self.device).long()
            return
        n = len(self.y) if order is None else len(order)
        for b in range(self.n_batches(batch_size, drop_last, n)):
            idx = slice(b * batch_size, (b + 1) * batch_size)
            if order is not None:
                idx = order[idx].to(self.device)
            yield self.x[idx], self.y[idx]


class History(list):
    """Per-epoch dicts of :func:`fit`; ``history['val_acc']`` is one column (fractions)."""

    def __getitem__(self, key):  # type: ignore[override]
        return [r.get(key) for r in self] if isinstance(key, str) else super().__getitem__(key)

    @property
    def best_epoch(self) -> int | None:
        """Epoch (1-based) with the highest validation accuracy (the first on ties)."""
        scored = [(r["val_acc"], -r["epoch"]) for r in self if r.get("val_acc") is not None]
        return -max(scored)[1] if scored else None

    def train_seconds(self) -> float:
        """Training time over all epochs, validation excluded."""
        return float(sum(r["train_seconds"] for r in self))


@dataclass
class EvalResult:
    """What :func:`evaluate` measures: predictions, confusion (rows: truth), per-class P/R/F1."""

    classes: list[str]
    labels: np.ndarray
    probabilities: np.ndarray
    loss: float
    paths: list[str] | None = None
    predictions: np.ndarray = field(init=False)
    confusion: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.predictions = self.probabilities.argmax(axis=1)
        c = len(self.classes)
        self.confusion = np.zeros((c, c), dtype=np.int64)
        np.add.at(self.confusion, (self.labels, self.predictions), 1)
        tp, pred_n, true_n = np.diag(self.confusion), self.confusion.sum(0), self.confusion.sum(1)
        self.accuracy = float(tp.sum() / max(len(self.labels), 1))
        self.precision = np.divide(tp, pred_n, out=np.zeros(c), where=pred_n > 0)
        self.recall = np.divide(tp, true_n, out=np.zeros(c), where=true_n > 0)
        pr = self.precision + self.recall
        self.f1 = np.divide(2 * self.precision * self.recall, pr, out=np.zeros(c), where=pr > 0)
        self.support = true_n

    def most_confused(self, k: int = 5) -> list[tuple[str, str, int]]:
        """The ``k`` largest off-diagonal cells: ``(true class, predicted class, count)``."""
        off = self.confusion * (1 - np.eye(len(self.classes), dtype=np.int64))
        cells = [np.unravel_index(i, off.shape) for i in np.argsort(-off, None, "stable")[:k]]
        return [(self.classes[i], self.classes[j], int(off[i, j])) for i, j in cells if off[i, j]]

    def misclassified(self, k: int | None = None) -> np.ndarray:
        """Indices of wrong predictions, most confident mistakes first."""
        wrong = np.flatnonzero(self.predictions != self.labels)
        conf = self.probabilities[wrong, self.predictions[wrong]]
        return wrong[np.argsort(-conf, kind="stable")][:k]

    def report(self) -> str:
        """Accuracy, a per-class precision/recall/F1 table and the most confused pairs."""
        w = max(8, *(len(c) for c in self.classes))
        lines = [f"accuracy {100 * self.accuracy:.2f} % on {len(self.labels)} clips "
                 f"(loss {self.loss:.4f})", f"{'class':<{w}}  precision  recall      f1  support"]
        lines += [f"{c:<{w}}  {100 * self.precision[i]:8.1f}%  {100 * self.recall[i]:5.1f}%  "
                  f"{100 * self.f1[i]:5.1f}%  {int(self.support[i]):7d}"
                  for i, c in enumerate(self.classes)]
        if pairs := self.most_confused(5):
            confused = ", ".join(f"{a} -> {b} ({n})" for a, b, n in pairs)
            lines.append(f"most confused (true -> predicted): {confused}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: accuracy, per-class figures, confusion, most confused pairs."""
        per_class = {c: {"precision": float(self.precision[i]), "recall": float(self.recall[i]),
                         "f1": float(self.f1[i]), "support": int(self.support[i])}
                     for i, c in enumerate(self.classes)}
        return {"accuracy": self.accuracy, "loss": self.loss, "n": len(self.labels),
                "classes": list(self.classes), "per_class": per_class,
                "confusion": self.confusion.tolist(),
                "most_confused": [list(p) for p in self.most_confused(10)]}


def amp_dtype(device: torch.device, amp: bool = True) -> torch.dtype | None:
    """Autocast dtype: bf16 on Ampere+ GPUs, fp16 (+ GradScaler) on older ones such as the T4,
    ``None`` (fp32) on CPU/MPS or with ``amp`` off (notebook 05)."""
    if not amp or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16


def _model_device(model: nn.Module) -> torch.device:
    return next((t.device for t in [*model.parameters(), *model.buffers()]), get_device())


@torch.no_grad()
def _logits(model: nn.Module, src: _Source, pipeline: Pipeline | None, dtype=None) -> tuple:
    was_training = model.training
    model.eval()
    out, labels = [], []
    for xb, yb in src.batches(512):
        inp = pipeline(xb) if pipeline is not None else xb
        with torch.autocast(src.device.type, dtype=dtype, enabled=dtype is not None):
            out.append(model(inp).float())
        labels.append(yb)
    model.train(was_training)
    if not out:
        raise ValueError("no examples to evaluate")
    return torch.cat(out).cpu(), torch.cat(labels).cpu()


def evaluate(
    model: nn.Module,
    data: Any,
    pipeline: Pipeline | None = None,
    *,
    device: str | torch.device | None = None,
    classes: Sequence[str] | None = None,
) -> EvalResult:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix (notebooks 03-05).

    ``data``: a split (give the training ``pipeline``, or a waveform->logits ``model`` from
    :func:`load_model`), an ``(inputs, labels)`` pair, or an iterable of batches.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device).eval()
    if pipeline is not None:
        pipeline.to(device)
    logits, labels = _logits(model, _Source(data, device), pipeline)
    if classes is None:
        classes = getattr(data, "classes", None) or [str(i) for i in range(logits.shape[1])]
    return EvalResult(list(classes), labels.numpy(), torch.softmax(logits, 1).numpy(),
                      float(F.cross_entropy(logits, labels)), getattr(data, "paths", None))


# --- Checkpoints: everything a killed run needs to go on exactly where it stopped ----------------
def _atomic_save(obj: Any, path: Path) -> None:
    """Write to a temporary file, flush it to disk, then rename: never a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            with contextlib.suppress(OSError):  # Drive's FUSE mount may refuse fsync
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit` without unpickling code (notebook 05)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def load_model(path: str | Path, device: str | None = None) -> tuple[nn.Module, dict]:
    """A checkpoint's waveform -> logits module (eval mode) and its metadata (notebooks 05, 06)."""
    ck = load_checkpoint(path)
    if not ck.get("model_name"):
        raise ValueError(f"{path}: no model_name; pass model_name= to fit() to make it loadable")
    model = build_model(ck["model_name"], len(ck["classes"]), **ck.get("model_kwargs", {}))
    model.load_state_dict(ck["state_dict"])
    infer = Pipeline.from_state(ck["pipeline"]).infer_module(model)
    meta = {k: v for k, v in ck.items() if k not in ("state_dict", "train_state")}
    return infer.to(device or get_device()).eval(), {**meta, "path": str(path)}


def record_test(checkpoint_dir: str | Path, result: EvalResult, **extra: Any) -> None:
    """Store test figures in ``best.pt``'s metrics, where notebook 06 reads them (notebook 05)."""
    path = Path(checkpoint_dir) / BEST
    ck = load_checkpoint(path)
    ck["metrics"] = {**ck.get("metrics", {}), "test_accuracy": result.accuracy,
                     "n_test": len(result.labels), "test": result.to_dict(), **extra}
    _atomic_save(ck, path)


def _rng_state(gens: Sequence[torch.Generator]) -> dict[str, Any]:
    npy = np.random.get_state()  # noqa: NPY002 - the legacy global state is what users seed
    py = random.getstate()
    return {"python": [py[0], list(py[1]), py[2]], "torch": torch.get_rng_state(),
            "numpy": [npy[0], torch.from_numpy(npy[1].astype(np.int64)), *npy[2:]],
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "generators": [g.get_state() for g in gens]}


def _set_rng_state(state: dict[str, Any], gens: Sequence[torch.Generator]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npy = state["numpy"]
    np.random.set_state((npy[0], npy[1].numpy().astype(np.uint32), *npy[2:]))  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for g, s in zip(gens, state["generators"], strict=True):
        g.set_state(s)


# --- The loop (notebooks 03-05): train_one_epoch, validate, save, resume -------------------------
def _make_optimizer(model: nn.Module, name: str, lr: float, wd: float) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]  # biases, norms
    groups = [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "sgd":  # the BC-ResNet authors' code: plain momentum, decay on every parameter
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    if name not in ("adamw", "adam"):
        raise ValueError(f"unknown optimizer {name!r}; choose 'adamw', 'adam' or 'sgd'")
    return (torch.optim.AdamW if name == "adamw" else torch.optim.Adam)(groups, lr=lr)


def _lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 (or constant)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


@dataclass
class _Run:
    """What the loop carries from epoch to epoch, and what ``last.pt`` saves."""

    model: nn.Module
    pipeline: Pipeline | None
    plan: dict[str, Any]  # the hyper-parameters; a resume must not change them silently
    meta: dict[str, Any]  # model_name, model_kwargs, classes, config: for load_model
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    gens: tuple[torch.Generator, torch.Generator]  # batch order, augmentation
    history: History = field(default_factory=History)
    best: tuple[float, int] = (-math.inf, 0)  # (validation accuracy, epoch)
    best_state: dict[str, Tensor] | None = None

    @classmethod
    def start(cls, model: nn.Module, pipeline: Pipeline | None, plan: dict, meta: dict) -> _Run:
        dev, dtype = _model_device(model), amp_dtype(torch.device(plan["device"]), plan["amp"])
        opt = _make_optimizer(model, plan["optimizer"], plan["lr"], plan["weight_decay"])
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)  # fp16 only
        gens = (torch.Generator().manual_seed(plan["seed"]),
                torch.Generator(device=dev).manual_seed(plan["seed"] + 1))
        return cls(model, pipeline, plan, meta, opt, scaler, gens)

    def record(self, rec: dict[str, Any]) -> bool:
        """Append an epoch; True (and its weights kept) if it is the best so far."""
        self.history.append(rec)
        score = rec.get("val_acc", -rec["train_loss"])  # no validation: the lowest loss
        if score <= self.best[0]:
            return False
        self.best = (score, rec["epoch"])
        self.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        return True


def train_one_epoch(run: _Run, src: _Source, epoch: int, progress: bool = True) -> dict[str, Any]:
    """One pass over the training data: augment, forward, loss, backward, step (notebook 05)."""
    p, model, dev = run.plan, run.model, src.device
    order = src.epoch_order(run.gens[0]) if src.iterable is None else None
    n_batches = src.n_batches(p["batch_size"], True, None if order is None else len(order))
    total, warmup = p["epochs"] * n_batches, round(p["warmup_epochs"] * n_batches)
    dtype = amp_dtype(dev, p["amp"])
    step_model = torch.compile(model) if p["compile"] else model
    loss_sum, correct = torch.zeros((), device=dev), torch.zeros((), device=dev)
    seen, t0 = 0, time.perf_counter()
    model.train()
    bar = tqdm(src.batches(p["batch_size"], order, drop_last=True), total=n_batches,
               desc=f"epoch {epoch + 1}/{p['epochs']}", disable=not progress, leave=False)
    for i, (xb, yb) in enumerate(bar):
        for g in run.opt.param_groups:  # the schedule is a function of the step: resumable
            g["lr"] = p["lr"] * _lr_factor(epoch * n_batches + i, total, warmup, p["schedule"])
        with torch.no_grad():
            inp = run.pipeline(xb, yb, train=True, generator=run.gens[1]) if run.pipeline else xb
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            logits = step_model(inp)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=p["label_smoothing"])
        run.opt.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        run.scaler.step(run.opt)
        run.scaler.update()
        seen += len(yb)
        loss_sum += loss.detach() * len(yb)
        correct += (logits.detach().argmax(1) == yb).sum()
    seconds = time.perf_counter() - t0
    train_loss = loss_sum.item() / max(seen, 1)
    if not math.isfinite(train_loss):
        raise FloatingPointError(f"epoch {epoch + 1}: training loss {train_loss}; lower the "
                                 "learning rate or switch off mixed precision (amp=False)")
    return {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": correct.item() / seen,
            "lr": run.opt.param_groups[0]["lr"], "train_seconds": seconds,
            "samples_per_s": seen / seconds}


def validate(run: _Run, src: _Source) -> dict[str, float]:
    """Validation loss and accuracy of the model as it is now (eval mode, no augmentation)."""
    dtype = amp_dtype(src.device, run.plan["amp"])
    logits, labels = _logits(run.model, src, run.pipeline, dtype)
    return {"val_loss": float(F.cross_entropy(logits, labels)),
            "val_acc": float((logits.argmax(1) == labels).double().mean())}


def _checkpoint(run: _Run, epoch: int) -> dict[str, Any]:
    best_acc, best_epoch = run.best
    pipe = run.pipeline
    meta = {k: v for k, v in run.meta.items() if k != "run_config"}
    return {**meta, "feature": pipe.feature if pipe else None,
            "pipeline": pipe.state() if pipe else None, "state_dict": run.model.state_dict(),
            "epoch": epoch, "history": [dict(r) for r in run.history],
            "config": {**run.meta["run_config"], **run.plan},
            "metrics": {"best_val_acc": best_acc, "best_epoch": best_epoch}}


def save_checkpoint(run: _Run, ckdir: Path, epoch: int, improved: bool) -> None:
    """``best.pt`` at a new best, then ``last.pt`` with optimizer, scaler and RNG states."""
    ckdir.mkdir(parents=True, exist_ok=True)
    if improved:  # best first: a crash in between is repaired by the re-run epoch
        _atomic_save(_checkpoint(run, epoch), ckdir / BEST)
    state = {"optimizer": run.opt.state_dict(), "scaler": run.scaler.state_dict(),
             "rng": _rng_state(run.gens)}
    _atomic_save({**_checkpoint(run, epoch), "train_state": state}, ckdir / LAST)


def resume_checkpoint(run: _Run, ckdir: Path) -> int:
    """Restore ``run`` from ``ckdir/last.pt``; returns the number of epochs already done.

    A run planned for fewer epochs continues on a re-planned schedule; any other changed
    hyper-parameter is refused, as is a checkpoint of another model or other classes.
    """
    for stale in ckdir.glob(".*.tmp*"):
        stale.unlink()  # left by a process killed while saving
    if not (ckdir / LAST).is_file():
        return 0
    ck = load_checkpoint(ckdir / LAST)
    hint = f"use another checkpoint_dir, or resume=False to start over in {ckdir}"
    for key in ("model_name", "classes"):
        if ck.get(key) != (mine := run.meta.get(key)):
            raise ValueError(f"{ckdir / LAST} has {key} {ck.get(key)!r}, not {mine!r}: {hint}")
    changed = {k: (ck["config"].get(k), v) for k, v in run.plan.items()
               if k not in ("epochs", "amp", "compile", "device") and ck["config"].get(k) != v}
    if changed:
        raise ValueError(f"{ckdir / LAST} was trained with other settings {changed} "
                         f"(saved, now): {hint}")
    run.model.load_state_dict(ck["state_dict"])
    run.opt.load_state_dict(ck["train_state"]["optimizer"])
    run.scaler.load_state_dict(ck["train_state"]["scaler"])
    _set_rng_state(ck["train_state"]["rng"], run.gens)
    if run.pipeline is not None and ck["pipeline"]["mean"] is not None:
        run.pipeline.normaliser = Normaliser(ck["pipeline"]["mean"], ck["pipeline"]["std"])
    run.history = History(ck["history"])
    run.best = (ck["metrics"]["best_val_acc"], ck["metrics"]["best_epoch"])
    if (ckdir / BEST).is_file():
        run.best_state = load_checkpoint(ckdir / BEST)["state_dict"]
    if ck["config"]["epochs"] != run.plan["epochs"]:
        print(f"resuming a {ck['config']['epochs']}-epoch run as {run.plan['epochs']} epochs: "
              "the learning-rate schedule is re-planned from here")
    return int(ck["epoch"])


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
    warmup_epochs: float = 0.0,
    schedule: str = "cosine",
    label_smoothing: float = 0.0,
    batch_size: int = 128,
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
    """Train ``model``: the one training loop of notebooks 03-05 and the CLI.

    ``train``/``val``: a split of int16 waveforms (``pipeline``, by default log-mel, makes the
    features on the device), an ``(inputs, labels)`` pair, or an iterable of batches. ``val``
    picks the best epoch; the test split is never touched here. AdamW/Adam/SGD with weight decay
    on weights only, per-step linear warm-up then cosine decay, label smoothing; on CUDA, ``amp``
    uses bf16 (Ampere+) or fp16 with a GradScaler (T4). With ``checkpoint_dir`` every epoch is
    saved (``last.pt``; ``best.pt`` at each new best validation accuracy) and a later call goes
    on where a killed run stopped. The resumed run ends bit for bit where an uninterrupted one
    would on the CPU; on CUDA only with ``deterministic=True`` (otherwise cuDNN picks its
    algorithms by timing). The model ends with the best-validation weights (``restore_best``).
    """
    device = torch.device(device) if device is not None else get_device()
    _seed_everything(seed, deterministic)
    src, val_src = _Source(train, device), _Source(val, device) if val is not None else None
    if pipeline is None and src.iterable is None and not src.x.is_floating_point():
        pipeline = Pipeline()  # int16 waveforms need features
    if pipeline is not None and pipeline.to(device).normaliser.mean.dim() == 0:
        pipeline.fit_normaliser(src.x if src.iterable is None else src.iterable)
    plan = {"epochs": epochs, "lr": lr, "weight_decay": weight_decay, "optimizer": optimizer,
            "warmup_epochs": warmup_epochs, "schedule": schedule, "batch_size": batch_size,
            "label_smoothing": label_smoothing, "seed": seed, "amp": amp, "compile": compile,
            "device": str(device)}
    meta = {"model_name": model_name or getattr(model, "model_name", None),
            "model_kwargs": dict(model_kwargs or {}), "run_config": dict(config or {}),
            "classes": list(classes or getattr(train, "classes", None) or []) or None}
    run = _Run.start(model.to(device), pipeline, plan, meta)
    ckdir, start = Path(checkpoint_dir).expanduser() if checkpoint_dir else None, 0
    if ckdir is not None and resume and (start := resume_checkpoint(run, ckdir)) and progress:
        print(f"resumed from {ckdir / LAST} after epoch {start}/{epochs}")
    for epoch in range(start, epochs):
        t0 = time.perf_counter()
        rec = train_one_epoch(run, src, epoch, progress)
        if val_src is not None:
            rec.update(validate(run, val_src))
        rec["seconds"] = time.perf_counter() - t0
        improved = run.record(rec)
        if ckdir is not None:
            save_checkpoint(run, ckdir, epoch + 1, improved)
        if progress:
            _print_epoch(rec, epochs, improved)
    if restore_best and run.best_state is not None:
        model.load_state_dict(run.best_state)
    model.eval()
    return run.history


def _seed_everything(seed: int, deterministic: bool) -> None:
    torch.backends.cudnn.benchmark = not deterministic  # autotuning picks kernels by timing
    torch.backends.cudnn.deterministic = deterministic
    set_seed(seed)  # Python, NumPy's legacy global state (user code may use it), PyTorch


def _print_epoch(rec: dict[str, Any], epochs: int, improved: bool) -> None:
    has_val = rec.get("val_acc") is not None
    val = f" | val loss {rec['val_loss']:.4f} acc {100 * rec['val_acc']:.2f}%" if has_val else ""
    tqdm.write(f"epoch {rec['epoch']:>3}/{epochs} | train loss {rec['train_loss']:.4f} acc "
               f"{100 * rec['train_acc']:.2f}%{val} | lr {rec['lr']:.2e} | "
               f"{rec['train_seconds']:.1f} s ({rec['samples_per_s']:.0f} samples/s)"
               f"{' *' if improved else ''}")


# --- Looking at a model and its training (notebooks 03, 03b) ------------------------------------
def plot_history(history: Sequence[dict], title: str | None = None) -> plt.Figure:
    """Loss and accuracy per epoch, training (running mean over the batches as trained: train
    mode, augmented) vs validation (notebook 03b)."""
    h = History(history)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    # what the model scored while it learnt: the batches as trained, not a clean pass
    train_label = ("training: running mean over the epoch's\n"
                   "batches in train mode (dropout, augmentation)")
    ax1.plot(h["epoch"], h["train_loss"], "o-", label=train_label)
    ax2.plot(h["epoch"], [100 * a for a in h["train_acc"]], "o-", label=train_label)
    if h.best_epoch:
        ax1.plot(h["epoch"], h["val_loss"], "s-", label="validation")
        ax2.plot(h["epoch"], [100 * a for a in h["val_acc"]], "s-", label="validation")
        ax2.axvline(h.best_epoch, color="grey", ls=":", label=f"best (epoch {h.best_epoch})")
    ax1.set(xlabel="epoch", ylabel="loss (cross-entropy, nats)", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "")
    fig.tight_layout()
    return fig


def plot_confusion(result: EvalResult, title: str | None = None) -> plt.Figure:
    """Confusion matrix, rows = true class coloured by recall, cells = counts (notebook 03b)."""
    cm, classes = result.confusion, result.classes
    shown = 100 * cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.55 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, label="% of the true class")
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted class", ylabel="true class", title=title or "confusion matrix")
    for (i, j), n in np.ndenumerate(cm):
        if n and len(classes) <= 20:
            colour = "white" if shown[i, j] > 60 else "black"
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color=colour)
    fig.tight_layout()
    return fig


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (notebook 03)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_summary(model: nn.Module, input_size: Sequence[int], depth: int = 3) -> Any:
    """torchinfo's table of layers, output shapes and parameters for one input (notebook 03b)."""
    from torchinfo import summary

    cols = ("output_size", "num_params", "mult_adds")
    return summary(model, input_size=tuple(input_size), depth=depth, col_names=cols,
                   device=_model_device(model), verbose=0)


# --- Recipes and the one-call training of notebook 05, the CLI and the benchmarks ----------------
#: Default training settings per model (what ``python utils.py train`` uses unless overridden).
RECIPES: dict[str, dict[str, Any]] = {
    "bcresnet": {  # chosen by speaker-grouped cross-validation (bench_kws.py --parts c --folds 3)
        "model_kwargs": {"width": 4}, "epochs": 30, "batch_size": 64, "optimizer": "adamw",
        "lr": 6e-3, "weight_decay": 1e-3, "warmup_epochs": 2, "label_smoothing": 0.05,
        "normalise": "clip", "augment": {"spec_augment": True, "speed_change": 0.1},
    },
    "bcresnet_paper": {"epochs": 200, "batch_size": 100, "optimizer": "sgd", "lr": 0.1,  # authors'
                       "weight_decay": 1e-3, "warmup_epochs": 5, "augment": {"speed_change": 0.0}},
    "cnnet": {  # checked on the real yes/no clips (benchmarks/bench_models.py, part yesno)
        "epochs": 20, "batch_size": 32, "optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-2,
        "warmup_epochs": 1, "augment": {"spec_augment": {"freq_masks": 2, "freq_width": 20,
                                                         "time_masks": 2, "time_width": 10}},
    },
    "cnnet_original": {  # Microsoft Learn's: Adam 1e-4, batch 15, 15 epochs, no augmentation
        "epochs": 15, "batch_size": 15, "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0,
        "schedule": "constant",
        "augment": {"spec_augment": False, "time_shift_ms": 0.0, "noise_prob": 0.0},
    },
    "mfcc1d": {"epochs": 30, "batch_size": 64, "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
               "augment": {"spec_augment": False}},
    "mfcc1d_plus": {
        "epochs": 30, "batch_size": 64, "optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-2,
        "warmup_epochs": 1, "label_smoothing": 0.05,
        "augment": {"spec_augment": {"freq_masks": 1, "freq_width": 4, "time_masks": 2,
                                     "time_width": 10}},
    },
}


def default_recipe(model_name: str) -> dict[str, Any]:
    """A copy of ``RECIPES[model_name]`` with every fit() setting filled in (notebook 05)."""
    if model_name not in RECIPES:
        raise ValueError(f"no recipe {model_name!r}; known: {', '.join(RECIPES)}")
    base = {"model_kwargs": {}, "warmup_epochs": 0, "label_smoothing": 0.0, "schedule": "cosine",
            "augment": {}}
    return json.loads(json.dumps({**base, **RECIPES[model_name]}))


@dataclass
class RunResult:
    """What :func:`train_task` returns."""

    model: nn.Module
    pipeline: Pipeline
    history: History
    test: EvalResult
    metrics: dict[str, Any]


def train_task(
    data: str | Path,
    task: str = "12",
    model: str = "bcresnet",
    *,
    out: str | Path | None = None,
    splits: dict[str, Any] | None = None,
    noise: np.ndarray | None = None,
    noise_dir: str | Path | None = None,
    words: Sequence[str] | None = None,
    test_data: str | Path | None = None,
    carve_out: bool = False,
    width: float | None = None,
    recipe: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    augment: dict[str, Any] | None = None,
    normalise: str | None = None,
    progress: bool = True,
    **fit_kwargs: Any,
) -> RunResult:
    """Load a task, train a registered model with its recipe, test it once (notebook 05, CLI).

    ``data``: a dataset name or folder; ``splits``/``noise`` skip the loading when the caller has
    them; ``noise_dir`` takes background noise from another folder; ``words`` picks a subset of
    word folders (with ``task='all'``); ``test_data``/``carve_out``: test on another folder,
    train on every clip but a validation carve-out (:func:`load_task`). ``normalise`` and any
    :func:`fit` keyword override the recipe. With ``out``: checkpoints there (resumed if
    present), the test figures recorded in ``best.pt`` and written to ``metrics.json``.
    """
    root = resolve_dataset(data)
    test_root = resolve_dataset(test_data) if test_data else None
    splits = splits or load_task(root, task, words=words, noise_dir=noise_dir, progress=progress,
                                 test_data=test_root, carve_out=carve_out)
    noise = noise if noise is not None else background_noise(root, "train", noise_dir=noise_dir)
    recipe = default_recipe(recipe or model)  # e.g. "bcresnet_paper": the published one
    mkw = {**recipe.pop("model_kwargs"), **(model_kwargs or {})}
    if width is not None:  # BC-ResNet's tau
        mkw["width"] = width
    aug = {**recipe.pop("augment"), **(augment or {})}
    normalise = normalise or recipe.get("normalise", "band")
    recipe.pop("normalise", None)  # a Pipeline setting, not a fit() keyword
    classes = list(splits["train"].classes)
    if "_silence_" in classes:
        aug.setdefault("silence_label", classes.index("_silence_"))
    torch.manual_seed(fit_kwargs.get("seed", 0))  # the initial weights depend on the seed too
    net = build_model(model, len(classes), **mkw)
    pipe = Pipeline(model_frontend(model, **mkw), noise=noise, normalise=normalise, **aug)
    history = fit(net, splits["train"], splits["validation"], pipeline=pipe, checkpoint_dir=out,
                  model_name=model, model_kwargs=mkw, classes=classes, progress=progress,
                  config={"task": task, "data": str(root), "augment": aug, "normalise": normalise},
                  **{**recipe, **fit_kwargs})
    test = evaluate(net, splits["test"], pipe)
    val = [v for v in history["val_acc"] if v is not None]
    metrics = {"task": task, "model": model, "model_kwargs": mkw, "params": count_parameters(net),
               "data": str(root), "n_train": len(splits["train"]), "n_test": len(test.labels),
               "test_accuracy": test.accuracy, "best_epoch": history.best_epoch,
               "best_val_acc": max(val, default=None), "epochs": len(history),
               "train_seconds": history.train_seconds(),
               "samples_per_s": float(np.median(history["samples_per_s"] or [np.nan])),
               "recipe": {**recipe, **fit_kwargs, "augment": aug, "normalise": normalise},
               "test": test.to_dict()}
    if out is not None:
        Path(out, "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
        record_test(out, test, task=task, data=str(root), params=metrics["params"])
    return RunResult(net, pipe, history, test, metrics)
