"""Using a trained model: predict, record, stream, export (notebook 06).

Everything here takes either a checkpoint path (``best.pt`` written by ``train.fit``) or an
inference module -- any ``nn.Module`` mapping a ``(B, 16000)`` float waveform batch at 16 kHz to
logits, such as the one ``train.load_model`` returns -- together with its class names::

    top = predict("clip.wav", "runs/kws/best.pt")               # [('yes', 0.97), ('no', 0.01), ...]
    times, post, hits = stream(long_audio, model, classes, 16000)  # keyword spotting over time
    report = export_model("runs/kws/best.pt", "runs/kws/export")   # TorchScript + ONNX + model card

Audio may be a path (anything libsndfile reads: WAV, FLAC, OGG/Vorbis, ...), raw file bytes, or
an array with its sample rate; any rate is resampled to 16 kHz and stereo is downmixed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import datetime
import hashlib
import io
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import soundfile as sf
import torch
from torch import Tensor, nn

from .data import CLIP_SAMPLES, SAMPLE_RATE, AudioError, fix_length, load_audio, resample

__all__ = [
    "FILLER_CLASSES",
    "Prediction",
    "WindowPrediction",
    "Detection",
    "StreamResult",
    "DetectionScores",
    "ExportReport",
    "load_inference_model",
    "as_audio",
    "decode_audio_bytes",
    "loudest_window",
    "predict",
    "predict_proba",
    "classify_batch",
    "stream",
    "detect",
    "make_sentence",
    "detection_scores",
    "plot_prediction",
    "plot_stream",
    "RECORDER_JS",
    "record_colab",
    "upload_colab",
    "record_local",
    "get_recording",
    "ConvSpectrogram",
    "exportable",
    "export_torchscript",
    "export_onnx",
    "onnx_export_error",
    "onnx_session",
    "check_parity",
    "measure_latency",
    "model_card",
    "write_model_card",
    "export_model",
]  # add_commands is called by cli.py directly (not re-exported: train.py has one too)

#: Classes that are never reported as keyword detections when streaming.
FILLER_CLASSES = ("_silence_", "_unknown_")

PathLike = str | os.PathLike

# --------------------------------------------------------------------------------------------
# Models: a checkpoint path, (module, meta), or a module plus its classes
# --------------------------------------------------------------------------------------------

_MODEL_CACHE: dict[tuple, tuple[nn.Module, dict[str, Any]]] = {}


def load_inference_model(
    model: Any, classes: Sequence[str] | None = None, device: str | torch.device | None = None
) -> tuple[nn.Module, list[str], dict[str, Any]]:
    """Resolve what the caller passed into ``(module in eval mode, classes, meta)`` (notebook 06).

    ``model`` is a checkpoint path (loaded with ``train.load_model`` once and cached by path and
    modification time), a ``(module, meta)`` pair as ``load_model`` returns it, a
    ``(module, classes)`` pair, or a module (then ``classes`` is required unless the module has a
    ``classes`` attribute).
    """
    meta: dict[str, Any] = {}
    if isinstance(model, (str, os.PathLike)):
        path = Path(model).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        dev = torch.device(device or "cpu")  # one clip at a time: the CPU is the default
        key = (str(path.resolve()), path.stat().st_mtime_ns, str(dev))
        if key not in _MODEL_CACHE:
            from .train import load_model

            if len(_MODEL_CACHE) >= 4:
                _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
            _MODEL_CACHE[key] = load_model(path, device=dev)
        module, meta = _MODEL_CACHE[key]
    elif isinstance(model, (tuple, list)) and len(model) == 2:
        module, extra = model
        if isinstance(extra, dict):
            meta = dict(extra)
        else:
            meta = {"classes": list(extra)}
    elif isinstance(model, nn.Module) or callable(model):
        module = model
    else:
        raise TypeError(f"expected a checkpoint path or a module, got {type(model).__name__}")
    if classes is None:
        classes = meta.get("classes") or getattr(module, "classes", None)
    if classes is None:
        raise ValueError("pass classes=[...] (the class names, in the model's output order)")
    if isinstance(module, nn.Module):
        module.eval()
        if device is not None and not isinstance(model, (str, os.PathLike)):
            module.to(device)
    meta.setdefault("classes", list(classes))
    return module, list(classes), meta


def _module_device(module: Any) -> torch.device:
    if isinstance(module, nn.Module):
        for t in list(module.parameters()) + list(module.buffers()):
            return t.device
    return torch.device("cpu")


@torch.inference_mode()
def _logits(module: Any, windows: np.ndarray | Tensor, batch_size: int = 128) -> np.ndarray:
    """Logits ``(W, C)`` for ``(W, T)`` float waveforms, in batches (never one call per window)."""
    dev = _module_device(module)
    x = torch.as_tensor(windows, dtype=torch.float32)
    out = []
    for i in range(0, x.shape[0], batch_size):
        out.append(module(x[i : i + batch_size].to(dev)).float().cpu())
    if not out:
        return np.zeros((0, 0), np.float32)
    return torch.cat(out).numpy()


def classify_batch(
    model: Any,
    audio: np.ndarray | Tensor,
    classes: Sequence[str] | None = None,
    batch_size: int = 128,
) -> np.ndarray:
    """Class probabilities ``(N, C)`` of ``(N, 16000)`` 16 kHz clips, int16 or float (notebook 06).

    ``model`` as in :func:`predict`; the clips go through the model in batches.
    """
    module, _, _ = load_inference_model(model, classes)
    x = np.asarray(audio)
    x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32)
    return _softmax(_logits(module, x, batch_size))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------
# Audio in: paths, bytes or arrays, any rate, any channel count
# --------------------------------------------------------------------------------------------


def decode_audio_bytes(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, int]:
    """Decode an in-memory file (WAV, FLAC, OGG...) to float32 ``(samples,)`` + rate (notebook 06).

    Stereo is averaged to mono; the file's own sample rate is returned (not resampled). A file
    libsndfile cannot read (for example a browser's WebM/Opus) raises :class:`AudioError`.
    """
    if not data:
        raise AudioError(f"{name}: empty file (0 bytes)")
    try:
        x, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        head = bytes(data[:4])
        hint = (
            " (WebM/Matroska: soundfile cannot decode it; send WAV)"
            if head == b"\x1aE\xdf\xa3"
            else ""
        )
        raise AudioError(f"{name}: not readable as audio{hint} ({e})") from e
    if x.shape[0] == 0:
        raise AudioError(f"{name}: contains no audio samples")
    return np.ascontiguousarray(x.mean(axis=1), dtype=np.float32), int(sr)


def _array_to_mono(x: np.ndarray, name: str) -> np.ndarray:
    """float32 mono from an int/float array shaped (T,), (C, T) or (T, C)."""
    x = np.asarray(x)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    elif x.dtype == np.int32:
        x = x.astype(np.float32) / 2.0**31
    elif x.dtype == np.uint8:
        x = (x.astype(np.float32) - 128.0) / 128.0
    elif not np.issubdtype(x.dtype, np.floating):
        raise AudioError(f"{name}: unsupported sample type {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if x.ndim == 2:  # channels are the short axis: (C, T) or soundfile's (T, C)
        x = x.mean(axis=0 if x.shape[0] <= x.shape[1] else 1)
    elif x.ndim != 1:
        raise AudioError(f"{name}: expected a 1-D or 2-D array, got shape {x.shape}")
    if x.size == 0:
        raise AudioError(f"{name}: contains no audio samples")
    if not np.isfinite(x).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
    return x


def as_audio(
    source: Any, sample_rate: int | None = None, name: str | None = None
) -> tuple[np.ndarray, str]:
    """Any audio source -> ``(float32 mono at 16 kHz, a name for messages)`` (notebook 06).

    ``source``: a path (read with soundfile through ``data.load_audio``), the bytes of a file, or
    a NumPy array / tensor (int16, int32 or float; ``(T,)``, ``(C, T)`` or ``(T, C)``) whose
    ``sample_rate`` must then be given. Bad input raises :class:`AudioError` naming it.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_dir():
            raise AudioError(f"{path}: is a folder, not an audio file")
        x = load_audio(path, SAMPLE_RATE)
        return x, str(path)
    if isinstance(source, (bytes, bytearray, memoryview)):
        name = name or "<bytes>"
        x, sr = decode_audio_bytes(bytes(source), name)
    else:
        name = name or "<array>"
        if isinstance(source, Tensor):
            source = source.detach().cpu().numpy()
        if sample_rate is None:
            raise ValueError(f"{name}: pass sample_rate= with an array (e.g. 16000 or 48000)")
        x, sr = _array_to_mono(source, name), int(sample_rate)
    if sr <= 0:
        raise AudioError(f"{name}: invalid sample rate {sr}")
    return np.ascontiguousarray(resample(x, sr, SAMPLE_RATE), dtype=np.float32), name


def loudest_window(x: np.ndarray, n: int = CLIP_SAMPLES) -> int:
    """Start of the ``n``-sample window with the most energy, in O(len) time (notebook 06).

    A running sum (cumulative sum of squares) instead of a convolution, so an hour of audio is
    as quick as a second. Returns 0 when ``x`` is not longer than ``n``.
    """
    if len(x) <= n:
        return 0
    c = np.concatenate([[0.0], np.cumsum(np.square(x, dtype=np.float64))])
    return int(np.argmax(c[n:] - c[:-n]))


# --------------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------------


class Prediction(NamedTuple):
    """One class and its probability (notebook 06)."""

    word: str
    prob: float


class WindowPrediction(NamedTuple):
    """The top classes of one window of a longer recording (notebook 06)."""

    start_s: float
    end_s: float
    top: list[Prediction]


def predict_proba(
    source: Any,
    model: Any,
    classes: Sequence[str] | None = None,
    sample_rate: int | None = None,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, list[str], np.ndarray, int]:
    """Probabilities of every class for the loudest second (notebook 06).

    Returns ``(probs (C,), classes, the 16 kHz window that was classified, its start sample)``.
    """
    module, classes, _ = load_inference_model(model, classes, device)
    x, _ = as_audio(source, sample_rate)
    start = loudest_window(x, CLIP_SAMPLES)
    window = fix_length(x[start : start + CLIP_SAMPLES], CLIP_SAMPLES)  # pads short clips
    probs = _softmax(_logits(module, window[None]))[0]
    return probs, classes, window, start


def _top(probs: np.ndarray, classes: Sequence[str], k: int) -> list[Prediction]:
    order = np.argsort(-probs, kind="stable")[: max(1, k)]
    return [Prediction(classes[i], float(probs[i])) for i in order]


def predict(
    source: Any,
    model: Any,
    sample_rate: int | None = None,
    top_k: int = 3,
    mode: str = "loudest",
    *,
    classes: Sequence[str] | None = None,
    hop_ms: float = 250.0,
    device: str | torch.device | None = None,
) -> list:
    """The ``top_k`` words of a recording with their probabilities (notebook 06).

    ``source``: a file path, file bytes, or an array (then give its ``sample_rate``); any rate,
    mono or stereo, any length. ``model``: a checkpoint path, ``(module, meta)`` or a module
    (with ``classes=``).

    ``mode='loudest'`` classifies the 1-s window with the most energy (a shorter clip is
    zero-padded at the end, as in training) and returns ``[Prediction(word, prob), ...]``.
    ``mode='all'`` classifies every 1-s window with a hop of ``hop_ms`` (in one batched call) and
    returns ``[WindowPrediction(start_s, end_s, top), ...]``.
    """
    if mode == "loudest":
        probs, classes, _, _ = predict_proba(source, model, classes, sample_rate, device)
        return _top(probs, classes, top_k)
    if mode != "all":
        raise ValueError(f"mode must be 'loudest' or 'all', got {mode!r}")
    module, classes, _ = load_inference_model(model, classes, device)
    x, _ = as_audio(source, sample_rate)
    hop = max(1, int(round(hop_ms * SAMPLE_RATE / 1000)))
    x = fix_length(x, CLIP_SAMPLES) if len(x) < CLIP_SAMPLES else x
    starts = np.arange(0, len(x) - CLIP_SAMPLES + 1, hop)
    if starts[-1] + CLIP_SAMPLES < len(x):  # the tail gets its own window
        starts = np.append(starts, len(x) - CLIP_SAMPLES)
    windows = torch.from_numpy(x).unfold(0, CLIP_SAMPLES, 1)[torch.from_numpy(starts)]
    probs = _softmax(_logits(module, windows))
    return [
        WindowPrediction(s / SAMPLE_RATE, (s + CLIP_SAMPLES) / SAMPLE_RATE, _top(p, classes, top_k))
        for s, p in zip(starts.tolist(), probs, strict=True)
    ]


def plot_prediction(
    audio: np.ndarray,
    probs: np.ndarray,
    classes: Sequence[str],
    sample_rate: int = SAMPLE_RATE,
    title: str | None = None,
    top_k: int = 5,
):
    """Waveform, log-mel and the top-k probability bars of one clip, side by side (notebook 06)."""
    import matplotlib.pyplot as plt

    from .features import LogMel

    x = np.asarray(audio, dtype=np.float32)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.2), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    t = np.arange(len(x)) / sample_rate
    axes[0].plot(t, x, lw=0.6)
    axes[0].set(xlabel="time (s)", ylabel="amplitude (full scale)", title="waveform")
    axes[0].set_ylim(-1.05, 1.05)
    x16 = resample(x, sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else x
    lm = LogMel()
    mel = lm(torch.from_numpy(np.ascontiguousarray(x16))).numpy()
    dur = len(x16) / SAMPLE_RATE
    im = axes[1].imshow(
        mel, origin="lower", aspect="auto", extent=[0, dur, 0, mel.shape[0]], cmap="magma"
    )
    axes[1].set(xlabel="time (s)", ylabel="mel band", title="log-mel (40 bands)")
    fig.colorbar(im, ax=axes[1], label="log power (natural log)")
    order = np.argsort(-probs)[:top_k][::-1]
    axes[2].barh([classes[i] for i in order], probs[order], color="tab:blue")
    axes[2].set(xlabel="probability", xlim=(0, 1), title="prediction")
    for i, v in enumerate(probs[order]):
        axes[2].text(min(v + 0.02, 0.85), i, f"{100 * v:.1f} %", va="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Microphone and upload (Colab, local Jupyter)
# --------------------------------------------------------------------------------------------

#: Browser-side recorder: MediaRecorder captures whatever the browser encodes (WebM/Opus in
#: Chrome), ``decodeAudioData`` turns it into PCM at the AudioContext's rate (usually 48 kHz),
#: and the JavaScript writes a 16-bit PCM WAV itself, so Python needs no FFmpeg.
RECORDER_JS = """
async function audioCourseRecord(seconds) {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  const rec = new MediaRecorder(stream);
  const chunks = [];
  rec.ondataavailable = (e) => { if (e.data.size > 0) chunks.push(e.data); };
  const stopped = new Promise((resolve) => { rec.onstop = resolve; });
  const note = document.createElement('div');
  note.style.cssText = 'font: bold 16px sans-serif; color: #c00; margin: 4px';
  document.body.appendChild(note);
  rec.start();
  for (let left = seconds; left > 0; left -= 0.5) {
    note.textContent = '\u25cf recording: say a word (' + left.toFixed(1) + ' s left)';
    await new Promise((r) => setTimeout(r, 500));
  }
  rec.stop();
  await stopped;
  stream.getTracks().forEach((t) => t.stop());
  note.textContent = 'recorded; decoding...';
  const blob = new Blob(chunks, {type: rec.mimeType});
  const ctx = new (window.AudioContext || window.webkitAudioContext)();
  const buf = await ctx.decodeAudioData(await blob.arrayBuffer());
  const n = buf.length, nch = buf.numberOfChannels, sr = buf.sampleRate;
  const mono = new Float32Array(n);
  for (let c = 0; c < nch; c++) {
    const d = buf.getChannelData(c);
    for (let i = 0; i < n; i++) mono[i] += d[i] / nch;
  }
  const out = new DataView(new ArrayBuffer(44 + 2 * n));
  const tag = (o, s) => {
    for (let i = 0; i < s.length; i++) out.setUint8(o + i, s.charCodeAt(i));
  };
  tag(0, 'RIFF'); out.setUint32(4, 36 + 2 * n, true); tag(8, 'WAVE');
  tag(12, 'fmt '); out.setUint32(16, 16, true); out.setUint16(20, 1, true);
  out.setUint16(22, 1, true); out.setUint32(24, sr, true); out.setUint32(28, 2 * sr, true);
  out.setUint16(32, 2, true); out.setUint16(34, 16, true);
  tag(36, 'data'); out.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) {
    const s = Math.max(-1, Math.min(1, mono[i]));
    out.setInt16(44 + 2 * i, s < 0 ? s * 32768 : s * 32767, true);
  }
  const bytes = new Uint8Array(out.buffer);
  let bin = '';
  for (let i = 0; i < bytes.length; i += 32768) {
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 32768));
  }
  await ctx.close();
  note.textContent = 'recorded ' + (n / sr).toFixed(2) + ' s at ' + sr + ' Hz';
  return btoa(bin);
}
"""


def record_colab(seconds: float = 2.0) -> tuple[np.ndarray, int]:
    """Record from the browser's microphone in Google Colab (notebook 06).

    Returns ``(float32 mono samples, sample rate)`` at the rate the browser used (usually
    48000 Hz; ``predict(..., sample_rate=sr)`` resamples). The browser asks for permission the
    first time. Only works inside Colab.
    """
    try:
        from google.colab import output  # type: ignore[import-not-found]
        from IPython.display import Javascript, display
    except ImportError as e:
        raise RuntimeError("record_colab() works only inside Google Colab") from e
    display(Javascript(RECORDER_JS))
    b64 = output.eval_js(f"audioCourseRecord({float(seconds)})", timeout_sec=seconds + 60)
    return decode_audio_bytes(base64.b64decode(b64), "<browser recording>")


def upload_colab() -> list[tuple[str, np.ndarray, int]]:
    """Upload audio files with Colab's file picker: ``[(name, samples, rate), ...]`` (notebook 06).

    Files that cannot be decoded are reported and skipped.
    """
    try:
        from google.colab import files  # type: ignore[import-not-found]
    except ImportError as e:
        raise RuntimeError("upload_colab() works only inside Google Colab") from e
    out = []
    for name, data in files.upload().items():
        try:
            x, sr = decode_audio_bytes(data, name)
        except AudioError as e:
            print(f"skipped: {e}")
            continue
        out.append((name, x, sr))
    return out


def record_local(seconds: float = 2.0, sample_rate: int = 16000) -> tuple[np.ndarray, int]:
    """Record from the default input device with ``sounddevice`` (local Jupyter; notebook 06).

    ``pip install sounddevice`` first (it needs the PortAudio library: on Debian/Ubuntu
    ``apt-get install libportaudio2``). Raises ``RuntimeError`` with the reason when it cannot.
    """
    try:
        import sounddevice as sd  # type: ignore[import-not-found]
    except (ImportError, OSError) as e:
        raise RuntimeError(
            "local recording needs the 'sounddevice' package (pip install sounddevice) and "
            f"PortAudio ({e}); or record a WAV with any app and pass its path to predict()"
        ) from e
    try:
        x = sd.rec(int(seconds * sample_rate), samplerate=sample_rate, channels=1, dtype="float32")
        sd.wait()
    except Exception as e:  # PortAudio errors: no input device, permission denied, ...
        raise RuntimeError(f"recording failed: {e}") from e
    return np.ascontiguousarray(x[:, 0]), int(sample_rate)


def get_recording(
    seconds: float = 2.0,
    use_microphone: bool = True,
    fallback: tuple[np.ndarray, int] | None = None,
) -> tuple[np.ndarray, int, str]:
    """Microphone if there is one, else ``fallback``: ``(samples, rate, where from)`` (notebook 06).

    Colab: the browser recorder; local Jupyter: ``sounddevice``; anywhere else (CI, a server, no
    microphone) or with ``use_microphone=False``: the ``fallback`` clip, with the reason printed.
    """
    from .env import in_colab

    reason = "use_microphone=False"
    if use_microphone:
        try:
            if in_colab():
                x, sr = record_colab(seconds)
                return x, sr, f"browser microphone ({sr} Hz)"
            x, sr = record_local(seconds)
            return x, sr, f"local microphone ({sr} Hz)"
        except Exception as e:  # no mic / no permission / no package: fall back, say why
            reason = str(e)
    if fallback is None:
        raise RuntimeError(f"no recording ({reason}) and no fallback clip given")
    print(f"no microphone recording ({reason}); using the fallback clip instead")
    return np.asarray(fallback[0]), int(fallback[1]), "fallback clip"


# --------------------------------------------------------------------------------------------
# Streaming keyword spotting
# --------------------------------------------------------------------------------------------


class Detection(NamedTuple):
    """A keyword found while streaming: word, time (s, window centre), score (notebook 06)."""

    word: str
    time_s: float
    score: float


class StreamResult(NamedTuple):
    """What :func:`stream` returns; unpacks as ``times, posteriors, detections`` (notebook 06).

    ``times``: ``(W,)`` centre of each 1-s window in seconds; ``posteriors``: ``(W, C)``
    smoothed class probabilities; ``detections``: list of :class:`Detection`.
    """

    times: np.ndarray
    posteriors: np.ndarray
    detections: list[Detection]


def _moving_average(p: np.ndarray, w: int) -> np.ndarray:
    """Causal moving average over ``w`` frames along axis 0 (shorter at the start)."""
    if w <= 1:
        return p.copy()
    c = np.cumsum(np.concatenate([np.zeros((1,) + p.shape[1:]), p]), axis=0)
    idx = np.arange(1, len(p) + 1)
    lo = np.maximum(idx - w, 0)
    return (c[idx] - c[lo]) / (idx - lo)[:, None]


def detect(
    times: np.ndarray,
    post: np.ndarray,
    classes: Sequence[str],
    threshold: float,
    refractory_s: float,
    ignore: Sequence[str],
) -> list[Detection]:
    """Detections from (smoothed) posteriors over time: threshold + refractory (notebook 06).

    The best keyword class (``ignore`` classes excluded) of each frame is followed; every
    stretch where it stays the same word above ``threshold`` gives one :class:`Detection` at its
    peak, and no stretch may start within ``refractory_s`` seconds after the last detection.
    :func:`stream` calls this; call it again on ``stream(...).posteriors`` to try another
    threshold without running the model again.
    """
    keep = [i for i, c in enumerate(classes) if c not in ignore]
    if not keep or len(times) == 0:
        return []
    sub = post[:, keep]
    best = sub.argmax(axis=1)
    score = sub[np.arange(len(sub)), best]
    out: list[Detection] = []
    last = -math.inf
    run: tuple[int, int, float] | None = None  # (frame, class, score) of the run's peak

    def emit() -> None:
        nonlocal last
        f, c, s = run
        out.append(Detection(classes[keep[c]], float(times[f]), float(s)))
        last = float(times[f])

    for f in range(len(times)):
        above = bool(score[f] >= threshold)
        if run is not None:
            if above and int(best[f]) == run[1]:
                if score[f] > run[2]:
                    run = (f, run[1], float(score[f]))
                continue
            emit()  # the run ended: below threshold, or another word took over
            run = None
        if above and times[f] - last >= refractory_s:
            run = (f, int(best[f]), float(score[f]))
    if run is not None:
        emit()
    return out


def stream(
    audio: Any,
    model: Any,
    classes: Sequence[str] | None = None,
    sample_rate: int | None = None,
    *,
    hop_ms: float = 100.0,
    window_s: float = 1.0,
    smooth_ms: float = 300.0,
    threshold: float = 0.6,
    refractory_ms: float = 1000.0,
    ignore: Sequence[str] = FILLER_CLASSES,
    batch_size: int = 32,
    device: str | torch.device | None = None,
) -> StreamResult:
    """Keyword spotting over a long recording (notebook 06).

    1. The recording (path, bytes or array at ``sample_rate``) is resampled to 16 kHz and padded
       with half a window of zeros at both ends, so the windows' centres cover the whole file.
    2. Every ``window_s`` window with a hop of ``hop_ms`` (a strided *view*, no copy) is
       classified in batches of ``batch_size`` -- one model call per batch, not per window.
    3. The class posteriors are smoothed with a causal moving average of ``smooth_ms`` (what a
       live system can do: it only averages the past).
    4. A detection is the peak of each stretch where the best keyword class stays above
       ``threshold``; after a detection nothing new may start for ``refractory_ms`` (one word
       is seen by ~10 overlapping windows and must fire once). ``ignore`` classes (silence,
       unknown) never fire.

    Returns ``StreamResult(times, posteriors, detections)``; times are window centres, so a live
    system would know each value ``window_s / 2`` later.
    """
    module, classes, _ = load_inference_model(model, classes, device)
    x, _ = as_audio(audio, sample_rate)
    win = int(round(window_s * SAMPLE_RATE))
    hop = max(1, int(round(hop_ms * SAMPLE_RATE / 1000)))
    half = win // 2
    padded = np.concatenate([np.zeros(half, np.float32), x, np.zeros(win - half, np.float32)])
    n_win = (len(padded) - win) // hop + 1
    windows = torch.from_numpy(padded).unfold(0, win, hop)[:n_win]  # (W, win) view
    times = np.arange(n_win) * hop / SAMPLE_RATE
    post = _softmax(_logits(module, windows, batch_size))
    smooth = _moving_average(post, max(1, int(round(smooth_ms / hop_ms))))
    detections = detect(times, smooth, classes, threshold, refractory_ms / 1000.0, ignore)
    return StreamResult(times, smooth, detections)


def _active_span(x: np.ndarray, rel_db: float = -30.0, frame: int = 160) -> tuple[int, int]:
    """First and last sample of the frames within ``rel_db`` of the loudest 10 ms frame."""
    n = len(x) // frame
    if n == 0:
        return 0, len(x)
    rms = np.sqrt(np.mean(np.square(x[: n * frame].reshape(n, frame), dtype=np.float64), axis=1))
    if rms.max() <= 0:
        return 0, len(x)
    on = np.flatnonzero(rms >= rms.max() * 10 ** (rel_db / 20))
    return int(on[0] * frame), int(min(len(x), (on[-1] + 1) * frame))


def make_sentence(
    clips: Sequence[np.ndarray] | np.ndarray,
    labels: Sequence[str],
    noise: np.ndarray | None = None,
    gap_s: tuple[float, float] = (0.5, 1.0),
    seed: int = 0,
    *,
    noise_gain: float = 0.05,
    margin_s: float = 0.1,
    sample_rate: int = SAMPLE_RATE,
) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
    """A long recording from separate clips, with known word positions (notebook 06).

    Each clip (int16 or float, 1-D; e.g. rows of a test ``SplitData.audio``) is trimmed to its
    active part (frames within 30 dB of its loudest, plus ``margin_s``), and the clips are
    concatenated with random gaps of ``gap_s`` seconds before, between and after them. A bed of
    background ``noise`` (rows of a ``(K, T)`` bank such as ``data.background_noise``, times
    ``noise_gain``) runs under the whole recording; without ``noise`` the gaps are silent.

    Returns ``(audio float32, truth)`` with ``truth = [(word, start_s, end_s), ...]`` -- the
    trimmed span of each clip in the recording (labels such as ``_unknown_`` are kept; scoring
    ignores them as targets).
    """
    if len(clips) != len(labels):
        raise ValueError(f"{len(clips)} clips but {len(labels)} labels")
    rng = np.random.default_rng(seed)
    margin = int(margin_s * sample_rate)
    pieces: list[np.ndarray] = []
    truth: list[tuple[str, float, float]] = []
    pos = 0

    def gap() -> None:
        nonlocal pos
        n = int(rng.uniform(*gap_s) * sample_rate)
        pieces.append(np.zeros(n, np.float32))
        pos += n

    gap()
    for clip, word in zip(clips, labels, strict=True):
        x = _array_to_mono(np.asarray(clip), "clip")
        a, b = _active_span(x)
        a, b = max(0, a - margin), min(len(x), b + margin)
        seg = x[a:b]
        pieces.append(seg)
        truth.append((str(word), pos / sample_rate, (pos + len(seg)) / sample_rate))
        pos += len(seg)
        gap()
    audio = np.concatenate(pieces).astype(np.float32)
    if noise is not None and len(noise) and noise_gain > 0:
        bank = np.asarray(noise)
        bank = bank.astype(np.float32) / 32768.0 if bank.dtype == np.int16 else bank
        bank = bank.reshape(-1, bank.shape[-1]).astype(np.float32)
        bed = np.concatenate(
            [bank[i] for i in rng.integers(len(bank), size=len(audio) // bank.shape[1] + 1)]
        )[: len(audio)]
        audio = np.clip(audio + noise_gain * bed, -1.0, 1.0)
    return audio.astype(np.float32), truth


@dataclass(frozen=True)
class DetectionScores:
    """Precision, recall and F1 of keyword detections; unpacks as ``p, r, f1`` (notebook 06)."""

    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int

    def __iter__(self):
        return iter((self.precision, self.recall, self.f1))

    def __str__(self) -> str:
        return (
            f"precision {100 * self.precision:.1f} %, recall {100 * self.recall:.1f} %, "
            f"F1 {100 * self.f1:.1f} % ({self.tp} hits, {self.fp} false alarms, {self.fn} missed)"
        )


def detection_scores(
    detections: Sequence[Detection | tuple],
    truth: Sequence[tuple[str, float, float]],
    tolerance: float = 0.25,
    ignore: Sequence[str] = FILLER_CLASSES,
) -> DetectionScores:
    """Match detections to the true words and score them (notebook 06).

    A detection is a hit when its word equals a not-yet-matched true word and its time lies in
    that word's span widened by ``tolerance`` seconds on both sides; every other detection is a
    false alarm (including one on an ``ignore`` clip such as ``_unknown_``), and every unmatched
    true keyword is a miss. Precision is 0 with no detections, recall 0 with no true keywords.
    """
    targets = [(w, a, b) for w, a, b in truth if w not in ignore]
    used = [False] * len(targets)
    tp = 0
    for det in sorted(detections, key=lambda d: d[1]):
        word, t = det[0], det[1]
        best, best_d = None, math.inf
        for j, (w, a, b) in enumerate(targets):
            if used[j] or w != word or not (a - tolerance <= t <= b + tolerance):
                continue
            d = abs(t - (a + b) / 2)
            if d < best_d:
                best, best_d = j, d
        if best is not None:
            used[best] = True
            tp += 1
    fp = len(detections) - tp
    fn = len(targets) - tp
    precision = tp / len(detections) if len(detections) else 0.0
    recall = tp / len(targets) if targets else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return DetectionScores(precision, recall, f1, tp, fp, fn)


def plot_stream(
    result: StreamResult | tuple,
    classes: Sequence[str],
    truth: Sequence[tuple[str, float, float]] | None = None,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    threshold: float | None = None,
    ignore: Sequence[str] = FILLER_CLASSES,
    title: str | None = None,
):
    """Posteriors over time with detections (markers) and true words (shaded) (notebook 06).

    ``result``: what :func:`stream` returned, ``(times, posteriors, detections)``. With
    ``audio`` (at ``sample_rate``) the waveform is drawn above, on the same time axis.
    """
    import matplotlib.pyplot as plt

    times, posteriors, detections = result
    rows = 2 if audio is not None else 1
    fig, axes = plt.subplots(
        rows,
        1,
        figsize=(14, 2.6 * rows + 1),
        sharex=True,
        squeeze=False,
        gridspec_kw={"height_ratios": [1, 1.6][-rows:]},
    )
    axes = axes[:, 0]
    ax = axes[-1]
    keep = [i for i, c in enumerate(classes) if c not in ignore]
    cmap = plt.get_cmap("tab10" if len(keep) <= 10 else "tab20")
    color = {classes[i]: cmap(k % cmap.N) for k, i in enumerate(keep)}
    for i in keep:
        ax.plot(times, posteriors[:, i], lw=1.2, color=color[classes[i]], label=classes[i])
    for i, c in enumerate(classes):
        if c in ignore:
            ax.plot(
                times,
                posteriors[:, i],
                lw=0.8,
                ls=":",
                color="grey",
                label=f"{c.strip('_')} (ignored)",
            )
    if threshold is not None:
        ax.axhline(threshold, color="black", ls="--", lw=0.8, label="threshold")
    for a in axes:
        for w, s, e in truth or []:
            a.axvspan(s, e, color=color.get(w, "lightgrey"), alpha=0.15 if w in color else 0.25)
    for w, s, e in truth or []:
        axes[0].text(
            (s + e) / 2,
            1.02,
            w,
            ha="center",
            va="bottom",
            fontsize=8,
            transform=axes[0].get_xaxis_transform(),
        )
    for d in detections:
        ax.plot(d.time_s, d.score, marker="v", ms=9, color=color.get(d.word, "black"), mec="black")
        ax.annotate(
            d.word,
            (d.time_s, d.score),
            xytext=(0, 8),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            fontweight="bold",
        )
    ax.set(xlabel="time (s)", ylabel="smoothed posterior probability", ylim=(0, 1.12))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, ncol=1 + len(keep) // 12)
    if audio is not None:
        t = np.arange(len(audio)) / sample_rate
        axes[0].plot(t, audio, lw=0.4, color="tab:gray")
        axes[0].set(ylabel="amplitude (full scale)")
    axes[0].set_title(
        title or "streaming keyword spotting: shaded = true words, triangles = detections",
        pad=14,
    )
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# Export: TorchScript, ONNX, parity, latency, model card
# --------------------------------------------------------------------------------------------


class ConvSpectrogram(nn.Module):
    """torchaudio's ``Spectrogram`` as a strided conv1d with fixed DFT kernels (notebook 06).

    ``torch.stft`` returns complex numbers, which the ONNX exporter of torch 2.11 cannot express
    without the optional ``onnxscript`` package. A DFT is a linear map, so each frame's real and
    imaginary parts are a convolution of the (reflect-padded) signal with windowed cosines and
    sines: same numbers up to float32 rounding, made of ops every runtime has (Pad, Conv, Mul).
    Built from an existing ``Spectrogram`` so it copies its exact window and settings.
    """

    def __init__(self, spec: nn.Module) -> None:
        super().__init__()
        if spec.power is None or spec.power not in (1, 1.0, 2, 2.0):
            raise ValueError(f"only power 1 or 2 spectrograms convert, not power={spec.power}")
        if not spec.onesided:
            raise ValueError("only one-sided spectrograms convert")
        n_fft, win_length = int(spec.n_fft), int(spec.win_length)
        window = torch.zeros(n_fft, dtype=torch.float64)
        left = (n_fft - win_length) // 2  # torch.stft centres a shorter window inside n_fft
        window[left : left + win_length] = spec.window.detach().double().cpu()
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64).unsqueeze(1)
        n = torch.arange(n_fft, dtype=torch.float64).unsqueeze(0)
        ang = 2 * math.pi * k * n / n_fft
        kernels = torch.cat([torch.cos(ang) * window, -torch.sin(ang) * window]).unsqueeze(1)
        scale = 1.0
        if spec.normalized in (True, "window"):
            scale = 1.0 / float(spec.window.double().pow(2).sum().sqrt())
        elif spec.normalized == "frame_length":
            scale = 1.0 / math.sqrt(win_length)
        self.register_buffer("kernels", (kernels * scale).float())
        self.n_fft, self.hop_length, self.pad = n_fft, int(spec.hop_length), int(spec.pad)
        self.center, self.pad_mode, self.power = bool(spec.center), spec.pad_mode, float(spec.power)

    def _pad_center(self, x: Tensor) -> Tensor:
        """``torch.stft(center=True)`` padding, written with static slices and flips."""
        n = self.n_fft // 2
        if self.pad_mode == "reflect":
            left, right = x[..., 1 : n + 1].flip(-1), x[..., -n - 1 : -1].flip(-1)
        elif self.pad_mode == "constant":
            left = right = torch.zeros_like(x[..., :n])
        else:
            return nn.functional.pad(x, (n, n), mode=self.pad_mode)
        return torch.cat([left, x, right], dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        # (B, T) -> (B, 1, T) without a reshape to -1, so exporters keep every static size
        x = x.unsqueeze(1) if x.dim() == 2 else x.reshape(-1, 1, shape[-1])
        if self.pad:
            x = nn.functional.pad(x, (self.pad, self.pad))
        if self.center:
            x = self._pad_center(x)
        spec = nn.functional.conv1d(x, self.kernels, stride=self.hop_length)
        n_freq = self.n_fft // 2 + 1  # static slices (not chunk): exporters keep the sizes
        re, im = spec[:, :n_freq], spec[:, n_freq:]
        p = re * re + im * im
        if self.power == 1.0:
            p = p.sqrt()
        return p if len(shape) == 2 else p.reshape(shape[:-1] + p.shape[-2:])


class _AdaptiveAvgPool2dMatmul(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two averaging matrices, for the classic ONNX exporter.

    That exporter refuses adaptive pooling whose output size does not divide the input size
    (CNNet pools 47 x 17 to 4 x 4); ``A_h @ x @ A_w.T`` averages exactly the same cells.
    """

    def __init__(self, output_size: Any) -> None:
        super().__init__()
        size = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2
        self.output_size = tuple(size)

    @staticmethod
    def _matrix(n_in: int, n_out: int | None, like: Tensor) -> Tensor:
        n_out = n_in if n_out is None else n_out
        a = torch.zeros(n_out, n_in, dtype=like.dtype, device=like.device)
        for i in range(n_out):  # PyTorch's cell bounds: floor(i*n/k) .. ceil((i+1)*n/k)
            lo, hi = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
            a[i, lo:hi] = 1.0 / (hi - lo)
        return a

    def forward(self, x: Tensor) -> Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])  # static for a fixed 1-s input
        a_h = self._matrix(h, self.output_size[0], x)
        a_w = self._matrix(w, self.output_size[1], x)
        return torch.matmul(torch.matmul(a_h, x), a_w.t())


def exportable(module: nn.Module) -> nn.Module:
    """A CPU copy of ``module`` whose spectrograms use :class:`ConvSpectrogram` (notebook 06).

    Every ``torchaudio.transforms.Spectrogram`` inside (log-mel, MFCC and dB spectrogram
    frontends all contain one) is swapped, and so is every ``nn.AdaptiveAvgPool2d`` (as
    averaging matrices); weights and buffers are unchanged, so the copy gives the same outputs
    and exports to ONNX with the features inside the graph.
    """
    import torchaudio

    out = copy.deepcopy(module).cpu().eval()
    for name, sub in list(out.named_modules()):
        for child_name, child in list(sub.named_children()):
            if isinstance(child, torchaudio.transforms.Spectrogram):
                setattr(sub, child_name, ConvSpectrogram(child))
            elif isinstance(child, nn.AdaptiveAvgPool2d):
                setattr(sub, child_name, _AdaptiveAvgPool2dMatmul(child.output_size))
        del name
    return out


def _example(batch: int = 1) -> Tensor:
    g = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(batch, CLIP_SAMPLES, generator=g)


def export_torchscript(module: nn.Module, path: PathLike) -> Path:
    """Trace ``module`` (waveform -> logits) to a TorchScript file, any batch size (notebook 06).

    Tracing records the operations run on an example batch; the file then runs without the
    course's Python code (``torch.jit.load(path)``, also from C++).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = copy.deepcopy(module).cpu().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's own deprecation notices
        with torch.no_grad():
            traced = torch.jit.trace(m, _example(2), check_inputs=[(_example(3),)])
        traced.save(str(path))
    return path


def _onnx_exporter(exporter: str) -> bool:
    """True for the dynamo (torch.export) exporter, False for the classic TorchScript one."""
    if exporter == "dynamo":
        try:
            import onnxscript  # noqa: F401
        except ImportError as e:
            raise RuntimeError("the dynamo ONNX exporter needs: pip install onnxscript") from e
        return True
    if exporter == "legacy":
        return False
    if exporter != "auto":
        raise ValueError(f"exporter must be 'auto', 'dynamo' or 'legacy', got {exporter!r}")
    try:  # the dynamo exporter needs onnxscript; without it the classic exporter does the job
        import onnxscript  # noqa: F401

        return True
    except ImportError:
        return False


def export_onnx(
    module: nn.Module,
    path: PathLike,
    classes: Sequence[str] | None = None,
    opset: int = 17,
    exporter: str = "auto",
) -> Path:
    """Export ``module`` to ONNX with the features inside the graph (notebook 06).

    The graph takes ``audio``: float32 ``(batch, 16000)`` in [-1, 1] at 16 kHz and returns
    ``logits``: ``(batch, n_classes)``; the batch axis is dynamic. Spectrograms are converted by
    :func:`exportable` first. ``exporter``: 'dynamo' (needs the ``onnxscript`` package),
    'legacy' (the TorchScript-based exporter, deprecated but still in torch 2.11) or 'auto'.
    The class names and sample rate are stored in the file's metadata.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = exportable(module)
    dynamo = _onnx_exporter(exporter)
    kwargs: dict[str, Any] = dict(
        input_names=["audio"], output_names=["logits"], opset_version=opset
    )
    if dynamo:
        batch = torch.export.Dim("batch", min=1, max=4096)
        kwargs.update(dynamic_shapes=({0: batch},), verbose=False)
    else:
        kwargs["dynamic_axes"] = {"audio": {0: "batch"}, "logits": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation notices of the classic exporter
        with torch.no_grad():
            torch.onnx.export(m, (_example(2),), str(path), dynamo=dynamo, **kwargs)
    model = onnx.load(str(path))
    meta = {
        "sample_rate": str(SAMPLE_RATE),
        "clip_samples": str(CLIP_SAMPLES),
        "exporter": "dynamo" if dynamo else "legacy",
        "producer": "audio-course",
    }
    if classes is not None:
        meta["classes"] = json.dumps(list(classes))
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@contextlib.contextmanager
def _quiet_output():
    """Silence file descriptors 1 and 2 (the classic exporter prints whole graphs on errors)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def onnx_export_error(module: nn.Module, opset: int = 17) -> str | None:
    """Try the classic ONNX exporter on ``module`` as it is: ``None`` if it works, else the
    first line of the error (notebook 06: why :func:`exportable` swaps the STFT)."""
    m = copy.deepcopy(module).cpu().eval()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with _quiet_output(), warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    m, (_example(1),), f"{tmp}/probe.onnx", dynamo=False, opset_version=opset
                )
        except Exception as e:  # any exporter failure is the answer we want to show
            first = str(e).strip().splitlines()[0].split("  [Caused by")[0]
            return f"{type(e).__name__}: {first}"
    return None


def onnx_session(path: PathLike, threads: int | None = None):
    """An onnxruntime CPU session for an exported model (notebook 06)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _load_torchscript(path: PathLike) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "torch.jit.load is deprecated" (torch 2.11)
        return torch.jit.load(str(path), map_location="cpu")


def check_parity(
    module: nn.Module,
    audio: np.ndarray | Tensor,
    torchscript: PathLike | None = None,
    onnx_path: PathLike | None = None,
) -> dict[str, dict[str, float]]:
    """Max abs difference of logits and probabilities vs eager PyTorch, per runtime (notebook 06).

    ``audio``: ``(N, 16000)`` float waveforms (real clips). Also checks the conv-STFT copy from
    :func:`exportable` in eager PyTorch, which isolates the STFT rewrite from the runtime.
    Returns ``{runtime: {'logits': ..., 'probs': ..., 'top1_agreement': ...}}``.
    """
    x = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    ref_module = copy.deepcopy(module).cpu().eval()
    with torch.inference_mode():
        ref = ref_module(x).float().numpy()
    outputs: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        outputs["pytorch conv-STFT"] = exportable(module)(x).float().numpy()
    if torchscript is not None:
        ts = _load_torchscript(torchscript)
        with torch.inference_mode():
            outputs["torchscript"] = ts(x).float().numpy()
    if onnx_path is not None:
        sess = onnx_session(onnx_path)
        outputs["onnxruntime"] = sess.run(None, {"audio": x.numpy()})[0]
    p_ref = _softmax(ref)
    return {
        name: {
            "logits": float(np.abs(out - ref).max()),
            "probs": float(np.abs(_softmax(out) - p_ref).max()),
            "top1_agreement": float((out.argmax(1) == ref.argmax(1)).mean()),
            "n_clips": int(len(x)),
        }
        for name, out in outputs.items()
    }


def measure_latency(fn: Callable[[], Any], runs: int = 100, warmup: int = 10) -> dict[str, float]:
    """Median and 90th percentile wall time of ``fn()`` in milliseconds (notebook 06)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    return {
        "median_ms": statistics.median(times),
        "p90_ms": times[min(len(times) - 1, int(0.9 * len(times)))],
        "runs": runs,
    }


def _runtime_latencies(
    module: nn.Module,
    torchscript: PathLike | None,
    onnx_path: PathLike | None,
    clip: np.ndarray,
    runs: int,
    threads: int = 1,
) -> dict[str, dict[str, float]]:
    """Batch-1 CPU latency per 1-s clip for eager PyTorch, TorchScript and onnxruntime.

    Every runtime gets the same number of CPU ``threads`` (default 1: the steadiest figure on a
    shared machine, and what a small device would have).
    """
    x = torch.as_tensor(np.asarray(clip, dtype=np.float32).reshape(1, -1))
    eager = copy.deepcopy(module).cpu().eval()
    out: dict[str, dict[str, float]] = {}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            out["pytorch eager"] = measure_latency(lambda: eager(x), runs)
            if torchscript is not None:
                ts = _load_torchscript(torchscript)
                out["torchscript"] = measure_latency(lambda: ts(x), runs)
        if onnx_path is not None:
            sess = onnx_session(onnx_path, threads=threads)
            feed = {"audio": x.numpy()}
            out["onnxruntime"] = measure_latency(lambda: sess.run(None, feed), runs)
    finally:
        torch.set_num_threads(before)
    return out


def _sha256(path: PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _training_data(meta: dict[str, Any]) -> dict[str, Any]:
    """Where the checkpoint's training data came from, saying plainly if it was synthetic."""
    config = meta.get("config") or {}
    metrics = meta.get("metrics") or {}
    data = config.get("data") or metrics.get("data")
    info: dict[str, Any] = {"path": data, "task": config.get("task") or metrics.get("task")}
    for k in ("n_train", "n_validation", "n_test"):
        if k in metrics:
            info[k] = metrics[k]
    synthetic = None
    if data:
        p = Path(str(data))
        try:  # the demo set's README opens with "SYNTHETIC" (audiocourse.demo)
            readme = (p / "README.md").read_text(errors="replace")[:2000]
        except OSError:
            readme = ""
        if "SYNTHETIC" in readme or "demo" in p.name:
            synthetic = True
        elif "speech_commands" in p.name:
            synthetic = False
    info["synthetic"] = synthetic
    if synthetic:
        info["description"] = (
            "SYNTHETIC demo data: words spoken by the eSpeak NG speech synthesizer with artificial "
            "noise (audiocourse.demo). It is NOT real speech; expect poor accuracy on real voices."
        )
    elif synthetic is False:
        info["description"] = (
            "Google Speech Commands (real 1-s recordings of many speakers, CC BY 4.0); see the "
            "path for which part."
        )
    else:
        info["description"] = "unknown: the checkpoint does not say where its data came from"
    return info


def model_card(
    meta: dict[str, Any],
    export: dict[str, Any] | None = None,
    parity: dict[str, Any] | None = None,
    latency: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The model card as a JSON-able dict: what, trained how, measured how (notebook 06)."""
    classes = list(meta.get("classes") or [])
    metrics = meta.get("metrics") or {}
    measured = {
        k: metrics[k]
        for k in ("test_accuracy", "test_loss", "best_val_acc", "n_test", "epochs", "params")
        if k in metrics
    }
    if "best_val_acc" not in measured and meta.get("best_val_acc") is not None:
        measured["best_val_acc"] = meta["best_val_acc"]
    feature = dict(meta.get("feature") or {})
    per_class = ((metrics.get("test") or {}).get("per_class")) or {}
    training = _training_data(meta)
    limits = [
        "Input must be 16 kHz mono float32 in [-1, 1], exactly 16000 samples (1 s) per row; "
        "resample and cut/pad other audio first (audiocourse.infer.predict does this).",
        "Recognises only the listed classes; other words should come out as '_unknown_' but "
        "often get a confident wrong keyword instead.",
        "Trained on isolated 1-s clips: in continuous speech use a sliding window with smoothing, "
        "a threshold and a refractory period (audiocourse.infer.stream), and expect false alarms.",
        "Accuracy drops with far-field audio, strong noise, music, children's or accented voices "
        "unlike the training speakers, and microphones unlike the training ones.",
        "Not for security or safety decisions (anyone can say the words; no speaker check).",
    ]
    if training.get("synthetic"):
        limits.insert(
            0,
            "Trained on SYNTHETIC speech (eSpeak NG): a teaching artefact, not a usable "
            "detector for real voices.",
        )
    if measured.get("test_accuracy") is None:
        limits.insert(0, "No test accuracy was stored in the checkpoint: performance unmeasured.")
    return {
        "name": f"{meta.get('model_name', 'model')} keyword spotter",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "architecture": meta.get("model_name"),
            "kwargs": meta.get("model_kwargs"),
            "parameters": metrics.get("params") or (meta.get("config") or {}).get("params"),
            "checkpoint": meta.get("path"),
            "epochs_trained": meta.get("epoch"),
        },
        "classes": classes,
        "input": {
            "name": "audio",
            "shape": ["batch", CLIP_SAMPLES],
            "dtype": "float32",
            "sample_rate_hz": SAMPLE_RATE,
            "range": "[-1, 1] (int16 PCM / 32768)",
        },
        "output": {
            "name": "logits",
            "shape": ["batch", len(classes)],
            "note": "raw scores; softmax over the last axis gives class probabilities",
        },
        "features": {
            **feature,
            "inside_graph": True,
            "normalisation": "per-band mean/std of the training split, inside the graph",
            "onnx_stft": "conv1d with fixed windowed-DFT kernels (ConvSpectrogram)",
        },
        "training_data": training,
        "metrics": {
            "measured_on": "the checkpoint's test split",
            **measured,
            "per_class": per_class,
        },
        "export": export or {},
        "parity_max_abs_diff": parity or {},
        "cpu_latency_batch1": latency or {},
        "known_limits": limits,
    }


def _card_markdown(card: dict[str, Any]) -> str:
    m, td, met = card["model"], card["training_data"], card["metrics"]
    acc = met.get("test_accuracy")
    lines = [
        f"# Model card: {card['name']}",
        "",
        f"Created {card['created']} by audio-course (notebook 06).",
        "",
        "## Model",
        f"- architecture: `{m['architecture']}` {m['kwargs'] or ''}",
        f"- parameters: {m['parameters']:,}" if m["parameters"] else "- parameters: unknown",
        f"- classes ({len(card['classes'])}): " + ", ".join(f"`{c}`" for c in card["classes"]),
        "- input: `audio`, float32 `(batch, 16000)`: 1 s of 16 kHz mono audio in [-1, 1]",
        "- output: `logits` `(batch, n_classes)`; softmax gives probabilities",
        "",
        "## Features (inside the exported graph)",
        "- " + ", ".join(f"{k}={v}" for k, v in card["features"].items() if k != "inside_graph"),
        "",
        "## Training data",
        f"- {td['description']}",
        f"- task: {td.get('task')}; folder: `{td.get('path')}`",
    ]
    if "n_train" in td:
        lines.append(
            f"- clips: {td['n_train']} train / {td.get('n_validation')} validation / "
            f"{td.get('n_test')} test"
        )
    lines += ["", "## Measured performance"]
    if acc is not None:
        lines.append(
            f"- test accuracy: **{100 * acc:.2f} %** on {met.get('n_test', '?')} clips "
            f"({td.get('task')}-class task)"
        )
    else:
        lines.append("- test accuracy: not stored in the checkpoint (unmeasured)")
    if met.get("best_val_acc") is not None:
        lines.append(f"- best validation accuracy: {100 * met['best_val_acc']:.2f} %")
    if met.get("per_class"):
        lines += ["", "| class | precision | recall | support |", "|---|---|---|---|"]
        for c, v in met["per_class"].items():
            lines.append(
                f"| {c} | {100 * v['precision']:.1f} % | {100 * v['recall']:.1f} % | "
                f"{v['support']} |"
            )
    if card["export"]:
        lines += ["", "## Exported files"]
        for k, v in card["export"].get("files", {}).items():
            lines.append(f"- {k}: `{v['file']}` ({v['bytes']:,} bytes, sha256 {v['sha256'][:16]}…)")
        for k in ("exporter", "opset", "torch", "onnxruntime"):
            if k in card["export"]:
                lines.append(f"- {k}: {card['export'][k]}")
    if card["parity_max_abs_diff"]:
        lines += [
            "",
            "## Parity with PyTorch (max abs difference)",
            "",
            "| runtime | logits | probabilities | top-1 agreement |",
            "|---|---|---|---|",
        ]
        for k, v in card["parity_max_abs_diff"].items():
            lines.append(
                f"| {k} | {v['logits']:.2e} | {v['probs']:.2e} | "
                f"{100 * v['top1_agreement']:.1f} % of {v['n_clips']} |"
            )
    if card["cpu_latency_batch1"]:
        lines += [
            "",
            "## CPU latency per 1-s clip (batch 1)",
            "",
            "| runtime | median | p90 |",
            "|---|---|---|",
        ]
        for k, v in card["cpu_latency_batch1"].items():
            if isinstance(v, dict):
                lines.append(f"| {k} | {v['median_ms']:.2f} ms | {v['p90_ms']:.2f} ms |")
        if "machine" in card["cpu_latency_batch1"]:
            lines.append(f"\nMeasured on: {card['cpu_latency_batch1']['machine']}")
    lines += ["", "## Known limits"] + [f"- {x}" for x in card["known_limits"]]
    return "\n".join(lines) + "\n"


def write_model_card(card: dict[str, Any], out_dir: PathLike) -> tuple[Path, Path]:
    """Write ``model_card.json`` and ``model_card.md`` into ``out_dir`` (notebook 06)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "model_card.json", out / "model_card.md"
    js.write_text(json.dumps(card, indent=2, default=str))
    md.write_text(_card_markdown(card))
    return js, md


@dataclass
class ExportReport:
    """What :func:`export_model` wrote and measured (notebook 06)."""

    files: dict[str, Path]
    parity: dict[str, dict[str, float]]
    latency: dict[str, Any]
    card_json: Path
    card_md: Path
    card: dict[str, Any] = field(repr=False)

    def summary(self) -> str:
        """A few lines: files, parity and latency."""
        lines = [f"{k}: {v}" for k, v in self.files.items()]
        for k, v in self.parity.items():
            lines.append(
                f"parity {k:>18}: max |logit diff| {v['logits']:.2e}, max |prob diff| "
                f"{v['probs']:.2e}, top-1 agreement {100 * v['top1_agreement']:.1f} % "
                f"({v['n_clips']} clips)"
            )
        for k, v in self.latency.items():
            if isinstance(v, dict):
                lines.append(
                    f"latency {k:>16}: median {v['median_ms']:.2f} ms, p90 {v['p90_ms']:.2f} ms "
                    f"per 1-s clip (batch 1, {v['runs']} runs)"
                )
        lines.append(f"model card: {self.card_json}, {self.card_md}")
        return "\n".join(lines)


def _parity_clips(meta: dict[str, Any], n: int = 32) -> tuple[np.ndarray, str]:
    """Up to ``n`` real test clips from the checkpoint's data folder, else synthetic sounds."""
    from .data import build_index

    data = (meta.get("config") or {}).get("data")
    if data and Path(data).is_dir():
        try:
            clips = [c for c in build_index(data) if c.split == "test"]
            rng = np.random.default_rng(0)
            pick = rng.choice(len(clips), size=min(n, len(clips)), replace=False)
            x = np.stack([fix_length(load_audio(clips[i].path)) for i in sorted(pick)])
            return x.astype(np.float32), f"{len(x)} test clips of {data}"
        except (OSError, ValueError) as e:
            warnings.warn(
                f"parity clips from {data} failed ({e}); using synthetic sounds", stacklevel=2
            )
    rng = np.random.default_rng(0)
    t = np.arange(CLIP_SAMPLES) / SAMPLE_RATE
    x = np.stack(
        [
            0.3 * np.sin(2 * np.pi * f * t) * np.hanning(CLIP_SAMPLES)
            + 0.02 * rng.standard_normal(CLIP_SAMPLES)
            for f in np.geomspace(150, 6000, n)
        ]
    )
    return x.astype(np.float32), f"{n} synthetic tones (no data folder found)"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def export_model(
    model: Any,
    out_dir: PathLike,
    formats: Sequence[str] = ("torchscript", "onnx"),
    *,
    classes: Sequence[str] | None = None,
    meta: dict[str, Any] | None = None,
    parity_audio: np.ndarray | None = None,
    latency_runs: int = 100,
    latency_threads: int = 1,
    exporter: str = "auto",
    opset: int = 17,
    name: str = "model",
) -> ExportReport:
    """Export a checkpoint (or module) and check it: files, parity, latency, card (notebook 06).

    Writes ``<name>.pt`` (TorchScript) and/or ``<name>.onnx`` into ``out_dir``, compares their
    outputs with eager PyTorch on ``parity_audio`` (default: up to 32 test clips of the
    checkpoint's dataset), times batch-1 inference per 1-s clip for every runtime on the CPU
    (median of ``latency_runs`` with ``latency_threads`` threads; 0 runs skips timing) and
    writes ``model_card.json``/``.md``.
    """
    formats = [f.lower() for f in formats]
    for f in formats:
        if f not in ("torchscript", "onnx"):
            raise ValueError(f"unknown format {f!r}; use 'torchscript' and/or 'onnx'")
    on_cpu = "cpu" if isinstance(model, (str, os.PathLike)) else None  # never move a caller's
    module, classes, loaded_meta = load_inference_model(model, classes, on_cpu)
    meta = {**loaded_meta, **(meta or {})}
    module = copy.deepcopy(module).cpu().eval()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    export_info: dict[str, Any] = {"files": {}, "torch": torch.__version__}
    if "torchscript" in formats:
        files["torchscript"] = export_torchscript(module, out / f"{name}.pt")
    if "onnx" in formats:
        import onnxruntime

        files["onnx"] = export_onnx(module, out / f"{name}.onnx", classes, opset, exporter)
        export_info.update(
            exporter="dynamo" if _onnx_exporter(exporter) else "legacy (TorchScript-based)",
            opset=opset,
            onnxruntime=onnxruntime.__version__,
        )
    for k, p in files.items():
        export_info["files"][k] = {"file": p.name, "bytes": p.stat().st_size, "sha256": _sha256(p)}
    if parity_audio is None:
        parity_audio, source = _parity_clips(meta)
    else:
        source = f"{len(parity_audio)} given clips"
    parity = check_parity(module, parity_audio, files.get("torchscript"), files.get("onnx"))
    latency: dict[str, Any] = {}
    if latency_runs > 0:
        latency = _runtime_latencies(
            module,
            files.get("torchscript"),
            files.get("onnx"),
            parity_audio[0],
            latency_runs,
            latency_threads,
        )
        latency["machine"] = f"{_machine()}; measured with {latency_threads} thread(s)"
    export_info["parity_clips"] = source
    card = model_card(meta, export_info, parity, latency)
    js, md = write_model_card(card, out)
    return ExportReport(files, parity, latency, js, md, card)


# --------------------------------------------------------------------------------------------
# Command line: python utils.py predict / stream / export
# --------------------------------------------------------------------------------------------


def _cmd_predict(args: argparse.Namespace) -> int:
    module, classes, _ = load_inference_model(str(args.checkpoint), device=args.device)
    status = 0
    for f in args.files:
        try:
            if args.all:
                for w in predict(f, (module, classes), top_k=args.top_k, mode="all"):
                    tops = ", ".join(f"{p.word} {100 * p.prob:.1f}%" for p in w.top)
                    print(f"{f} [{w.start_s:6.2f}-{w.end_s:6.2f} s]: {tops}")
            else:
                top = predict(f, (module, classes), top_k=args.top_k)
                print(f"{f}: " + ", ".join(f"{p.word} {100 * p.prob:.1f}%" for p in top))
        except AudioError as e:
            print(f"error: {e}")
            status = 1
    return status


def _cmd_stream(args: argparse.Namespace) -> int:
    module, classes, _ = load_inference_model(str(args.checkpoint), device=args.device)
    x, name = as_audio(str(args.file))
    res = stream(
        x,
        (module, classes),
        sample_rate=SAMPLE_RATE,
        hop_ms=args.hop_ms,
        smooth_ms=args.smooth_ms,
        threshold=args.threshold,
        refractory_ms=args.refractory_ms,
    )
    print(
        f"{name}: {len(x) / SAMPLE_RATE:.2f} s, {len(res.times)} windows, "
        f"{len(res.detections)} detections (threshold {args.threshold})"
    )
    for d in res.detections:
        print(f"{d.time_s:8.2f} s  {d.word:<10} {d.score:.3f}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        fig = plot_stream(res, classes, audio=x, threshold=args.threshold, title=name)
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    ckpt = Path(args.checkpoint)
    out = args.out or ckpt.parent / "export"
    formats = ["torchscript", "onnx"] if args.format == "all" else [args.format]
    parity_audio = None
    if args.data:
        from .data import build_index, resolve_dataset

        clips = [c for c in build_index(resolve_dataset(args.data)) if c.split == "test"][:32]
        parity_audio = np.stack([fix_length(load_audio(c.path)) for c in clips])
    rep = export_model(
        ckpt,
        out,
        formats,
        parity_audio=parity_audio,
        latency_runs=args.runs,
        latency_threads=args.threads,
        exporter=args.exporter,
    )
    print(rep.summary())
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``predict``, ``stream`` and ``export`` to ``python utils.py`` (README; notebook 06)."""
    p = subparsers.add_parser(
        "predict", help="top-k words of audio files (any rate/channels/length)"
    )
    p.add_argument("checkpoint", type=Path, help="best.pt written by train")
    p.add_argument("files", nargs="+", help="WAV/FLAC/OGG files")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument(
        "--all", action="store_true", help="every 1-s window (hop 250 ms), not just the loudest"
    )
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_predict)

    p = subparsers.add_parser("stream", help="keyword spotting over a long recording")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("file", type=Path, help="a long WAV/FLAC/OGG recording")
    p.add_argument("--threshold", type=float, default=0.6, help="smoothed posterior to fire")
    p.add_argument("--hop-ms", type=float, default=100.0)
    p.add_argument("--smooth-ms", type=float, default=300.0)
    p.add_argument("--refractory-ms", type=float, default=1000.0)
    p.add_argument("--plot", type=Path, default=None, help="save the posterior plot (PNG)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_stream)

    p = subparsers.add_parser(
        "export", help="TorchScript / ONNX export with parity, latency and a model card"
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--format", choices=["onnx", "torchscript", "all"], default="all")
    p.add_argument("--out", type=Path, default=None, help="default: CHECKPOINT_DIR/export")
    p.add_argument(
        "--data",
        default=None,
        help="clips for the parity check (default: the checkpoint's dataset)",
    )
    p.add_argument("--runs", type=int, default=100, help="latency runs per runtime (0: skip)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the latency runs")
    p.add_argument("--exporter", choices=["auto", "dynamo", "legacy"], default="auto")
    p.set_defaults(func=_cmd_export)
