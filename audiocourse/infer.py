"""Using a trained model: predict, record, stream, export (notebook 06).

``model``: a checkpoint path (``best.pt``) or ``(module, meta | classes)``, the module mapping
``(B, 16000)`` 16 kHz waveforms to logits. Audio: a path, file bytes, or an array and its rate.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import io
import json
import os
import time
import warnings
from collections import namedtuple
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch import Tensor, nn

from . import data
from .data import CLIP_SAMPLES, SAMPLE_RATE, AudioError, fix_length, load_audio, resample
from .env import in_colab
from .train import load_model

__all__ = ["FILLER_CLASSES", "load_inference_model", "as_audio", "predict", "predict_proba",
           "classify_batch", "RECORDER_JS", "get_recording", "stream", "detect", "make_sentence",
           "detection_scores", "plot_stream", "exportable", "measure_latency",
           "export_model"]  # fmt: skip

FILLER_CLASSES = ("_silence_", "_unknown_")  #: never reported as keyword detections

# Result types: private names, readable reprs such as ``Prediction(word='yes', prob=0.97)``.
_Prediction = namedtuple("Prediction", "word prob")
_Detection = namedtuple("Detection", "word time_s score")
_StreamResult = namedtuple("StreamResult", "times posteriors detections")
_Scores = namedtuple("DetectionScores", "precision recall f1 tp fp fn")


# --- models and audio in ------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _load(path: Path, mtime_ns: int, device: str) -> tuple[nn.Module, dict[str, Any]]:
    return load_model(path, device=device)


def load_inference_model(model: Any, device: str | None = None) -> tuple[nn.Module, list, dict]:
    """``(module in eval mode, classes, meta)`` from a checkpoint path (loaded once, on the CPU
    unless ``device`` is given), ``(module, meta)`` or ``(module, classes)`` (notebook 06)."""
    meta: dict[str, Any] = {}
    if isinstance(model, (str, os.PathLike)):
        path = Path(model).expanduser().resolve()  # stat() raises FileNotFoundError if missing
        module, meta = _load(path, path.stat().st_mtime_ns, str(device or "cpu"))
    elif isinstance(model, (tuple, list)) and len(model) == 2:
        module, extra = model
        meta = dict(extra) if isinstance(extra, dict) else {"classes": list(extra)}
    else:
        raise TypeError("pass a checkpoint path, (module, meta) or (module, class names)")
    return module.eval(), list(meta["classes"]), meta


@torch.inference_mode()
def _logits(module: nn.Module, windows: np.ndarray | Tensor, batch_size: int = 128) -> np.ndarray:
    """Logits ``(W, C)`` of ``(W, T)`` float waveforms, in batches (never one call per window)."""
    dev = next((t.device for t in [*module.parameters(), *module.buffers()]), "cpu")
    x = torch.as_tensor(windows, dtype=torch.float32)
    return torch.cat([module(x[i : i + batch_size].to(dev)).float().cpu()
                      for i in range(0, len(x), batch_size)]).numpy()  # fmt: skip


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def classify_batch(model: Any, audio: np.ndarray) -> np.ndarray:
    """Class probabilities ``(N, C)`` of ``(N, 16000)`` clips, int16 or float (notebook 06)."""
    module, _, _ = load_inference_model(model)
    return _softmax(_logits(module, _array_to_float(np.asarray(audio), "audio")))


def _array_to_float(x: np.ndarray, name: str) -> np.ndarray:
    """float32 in [-1, 1] from int or float samples; empty or non-finite audio is an error."""
    if np.issubdtype(x.dtype, np.signedinteger):
        x = x.astype(np.float32) / float(2 ** (8 * x.itemsize - 1))  # int16 / 32768, int32 / 2**31
    elif not np.issubdtype(x.dtype, np.floating):
        raise AudioError(f"{name}: unsupported sample type {x.dtype}")
    if x.size == 0:
        raise AudioError(f"{name}: contains no audio samples")
    if not np.isfinite(x).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
    return np.ascontiguousarray(x, dtype=np.float32)


def as_audio(source: Any, sample_rate: int | None = None) -> tuple[np.ndarray, str]:
    """A path, file bytes (WAV, FLAC, OGG...), or an array ``(T,)``, ``(C, T)``, ``(T, C)`` with
    its ``sample_rate`` -> ``(float32 mono at 16 kHz, a name for messages)`` (notebook 06)."""
    if isinstance(source, (str, os.PathLike)):
        if Path(source).is_dir():
            raise AudioError(f"{source}: is a folder, not an audio file")
        return load_audio(source, SAMPLE_RATE), str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        try:
            x, sample_rate = sf.read(io.BytesIO(source), dtype="float32")
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
            webm = " (WebM: soundfile cannot read it)" if source[:4] == b"\x1aE\xdf\xa3" else ""
            raise AudioError(f"<bytes>: not readable as audio{webm} ({e})") from e
        source = x
    if sample_rate is None:
        raise ValueError("pass sample_rate= with an array (e.g. 16000 or 48000)")
    x = np.asarray(source.detach().cpu() if isinstance(source, Tensor) else source)
    x = _array_to_float(x, "<array>")
    if x.ndim == 2:  # channels are the short axis: (C, T) or soundfile's (T, C)
        x = x.mean(axis=0 if x.shape[0] <= x.shape[1] else 1)
    if x.ndim != 1:
        raise AudioError(f"expected mono or stereo audio, got shape {x.shape}")
    return resample(x, int(sample_rate), SAMPLE_RATE).astype(np.float32), "<audio>"


# --- predict ------------------------------------------------------------------------------
def predict_proba(source: Any, model: Any, sample_rate: int | None = None) -> tuple:
    """``(probabilities, classes, the 16 kHz second classified)``: the loudest second, a shorter
    clip zero-padded, as in training (``data.fix_length``) (notebook 06)."""
    module, classes, _ = load_inference_model(model)
    window = fix_length(as_audio(source, sample_rate)[0])
    return _softmax(_logits(module, window[None]))[0], classes, window


def predict(source: Any, model: Any, sample_rate: int | None = None, top_k: int = 3) -> list:
    """The ``top_k`` words of a recording's loudest second: ``[Prediction(word, prob)]``
    (notebook 06); :func:`stream` classifies every second of a long one."""
    probs, classes, _ = predict_proba(source, model, sample_rate)
    return [_Prediction(classes[i], float(probs[i])) for i in np.argsort(-probs)[:top_k]]


# --- microphone: in Colab the browser records; in local Jupyter sounddevice ----------------
#: Browser recorder: MediaRecorder records (WebM/Opus in Chrome) and ``decodeAudioData`` turns
#: it into samples at the browser's rate, handed to Python as int16 values: no FFmpeg needed.
RECORDER_JS = """
async function audioCourseRecord(seconds) {
  const stream = await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: false,
    noiseSuppression: false, autoGainControl: false}});  // the raw microphone, as in training
  const rec = new MediaRecorder(stream), chunks = [];
  rec.ondataavailable = (e) => chunks.push(e.data);
  const stopped = new Promise((resolve) => { rec.onstop = resolve; });
  const note = document.body.appendChild(document.createElement('div'));
  note.textContent = '\u25cf recording: say a word (' + seconds + ' s)';
  rec.start();
  await new Promise((resolve) => setTimeout(resolve, 1000 * seconds));
  rec.stop();
  await stopped;
  stream.getTracks().forEach((t) => t.stop());
  const ctx = new AudioContext();
  const buf = await ctx.decodeAudioData(await new Blob(chunks).arrayBuffer());
  note.textContent = 'recorded ' + buf.duration.toFixed(2) + ' s at ' + buf.sampleRate + ' Hz';
  return [buf.sampleRate, Array.from(buf.getChannelData(0), (v) => Math.round(32767 * v))];
}
"""


def get_recording(seconds: float = 2.0, use_microphone: bool = True, fallback: tuple | None = None
                  ) -> tuple[np.ndarray, int, str]:  # fmt: skip
    """``(samples, rate, where from)``: Colab's browser microphone (usually 48 kHz), locally
    ``sounddevice``; else ``fallback`` ``(samples, rate)``, printing why (notebook 06)."""
    reason = "use_microphone=False"
    try:
        if use_microphone and in_colab():
            from google.colab import output  # type: ignore[import-not-found]
            from IPython.display import Javascript, display

            display(Javascript(RECORDER_JS))
            sr, pcm = output.eval_js(f"audioCourseRecord({seconds})", timeout_sec=seconds + 60)
            return np.asarray(pcm, np.float32) / 32768, sr, f"browser microphone ({sr} Hz)"
        if use_microphone:
            import sounddevice as sd  # type: ignore[import-not-found]  # pip install sounddevice

            sr = int(sd.query_devices(kind="input")["default_samplerate"])  # the device's rate
            x = sd.rec(int(seconds * sr), samplerate=sr, channels=1)  # predict() resamples
            sd.wait()
            return x[:, 0], sr, f"local microphone ({sr} Hz)"
    except Exception as e:  # no microphone, no permission, no package: fall back, say why
        reason = f"{type(e).__name__}: {e}"
    if fallback is None:
        raise RuntimeError(f"no recording ({reason}) and no fallback clip given")
    print(f"no microphone recording ({reason}); using the fallback clip instead")
    return np.asarray(fallback[0]), int(fallback[1]), "fallback clip"


# --- streaming keyword spotting -------------------------------------------------------------
def detect(times: np.ndarray, post: np.ndarray, classes: Sequence[str], threshold: float,
           refractory_s: float, ignore: Sequence[str] = FILLER_CLASSES) -> list:  # fmt: skip
    """``[Detection(word, time_s, score)]`` at the peak of each stretch where one keyword stays
    above ``threshold``, none within ``refractory_s`` of the last (notebook 06)."""
    keep = [i for i, c in enumerate(classes) if c not in ignore]
    best, score = post[:, keep].argmax(axis=1), post[:, keep].max(axis=1)
    out: list = []
    peak = None  # frame of the open stretch's peak
    for f in range(len(times) + 1):
        above = f < len(times) and score[f] >= threshold
        if peak is not None and above and best[f] == best[peak]:
            peak = f if score[f] > score[peak] else peak
            continue
        if peak is not None:  # the stretch ended: below threshold, or another word took over
            word = classes[keep[best[peak]]]
            out.append(_Detection(word, float(times[peak]), float(score[peak])))
            peak = None
        if above and times[f] - (out[-1].time_s if out else -np.inf) >= refractory_s:
            peak = f
    return out


def stream(audio: Any, model: Any, sample_rate: int | None = None, *, hop_ms: float = 100.0,
           smooth_ms: float = 300.0, threshold: float = 0.6, refractory_ms: float = 1000.0,
           batch_size: int = 32):  # fmt: skip
    """Keyword spotting over a long recording: ``(times, posteriors, detections)`` (notebook 06).
    1-s windows every ``hop_ms`` in batches, smoothed over ``smooth_ms``, then :func:`detect`."""
    module, classes, _ = load_inference_model(model)
    x, _ = as_audio(audio, sample_rate)
    hop, half = max(1, round(hop_ms * SAMPLE_RATE / 1000)), CLIP_SAMPLES // 2
    x = np.concatenate([np.zeros(half, np.float32), x, np.zeros(half, np.float32)])
    windows = torch.from_numpy(x).unfold(0, CLIP_SAMPLES, hop)  # (W, 16000), no copy
    times = np.arange(len(windows)) * hop / SAMPLE_RATE
    post = _softmax(_logits(module, windows, batch_size))
    w = max(1, round(smooth_ms / hop_ms))  # causal: a live system only knows the past
    c = np.cumsum(np.concatenate([np.zeros((1, post.shape[1])), post]), axis=0)
    i = np.arange(1, len(post) + 1)
    smooth = (c[i] - c[np.maximum(i - w, 0)]) / np.minimum(i, w)[:, None]
    dets = detect(times, smooth, classes, threshold, refractory_ms / 1000)
    return _StreamResult(times, smooth, dets)


def make_sentence(clips: Sequence[np.ndarray], labels: Sequence[str], noise: Any = None,
                  gap_s: tuple = (0.5, 1.0), seed: int = 0, noise_gain: float = 0.05
                  ) -> tuple[np.ndarray, list[tuple[str, float, float]]]:  # fmt: skip
    """A 16 kHz recording of clips with random gaps: ``(audio, [(word, start_s, end_s)])``
    (notebook 06): each clip's span, from where it was mixed in, trimmed to its 10-ms frames
    above both -30 dB and half-way (in dB) from its floor to its peak, plus 0.1 s; random rows
    of a ``noise`` bank, times ``noise_gain``, run underneath."""
    rng = np.random.default_rng(seed)
    pieces, truth, pos = [], [], 0
    for clip, word in [*zip(clips, labels, strict=True), (None, None)]:
        pieces.append(np.zeros(int(rng.uniform(*gap_s) * SAMPLE_RATE), np.float32))
        pos += len(pieces[-1])
        if clip is None:
            break
        x = _array_to_float(np.asarray(clip), "clip")
        rms = np.sqrt(np.square(x[: len(x) // 160 * 160].reshape(-1, 160)).mean(axis=1))
        floor = np.percentile(rms, 10)  # robust on noisy clips, where -30 dB keeps everything
        on = np.flatnonzero(rms >= max(rms.max() / 31.6, np.sqrt(rms.max() * floor))) * 160
        seg = x[max(0, on[0] - 1600) : on[-1] + 160 + 1600] if rms.max() > 0 else x
        pieces.append(seg)
        truth.append((str(word), pos / SAMPLE_RATE, (pos + len(seg)) / SAMPLE_RATE))
        pos += len(seg)
    audio = np.concatenate(pieces)
    if noise is not None and len(noise) and noise_gain > 0:
        bank = _array_to_float(np.atleast_2d(noise), "noise")
        bed = bank[rng.integers(len(bank), size=len(audio) // bank.shape[1] + 1)].reshape(-1)
        audio = np.clip(audio + noise_gain * bed[: len(audio)], -1.0, 1.0)
    return audio.astype(np.float32), truth


def detection_scores(detections: Sequence[tuple], truth: Sequence[tuple], tolerance: float = 0.25,
                     ignore: Sequence[str] = FILLER_CLASSES) -> _Scores:  # fmt: skip
    """``(precision, recall, f1, tp, fp, fn)``: a hit matches a true keyword's word and span
    (widened by ``tolerance`` s) once; other detections are false alarms (notebook 06)."""
    targets = [(w, a, b) for w, a, b in truth if w not in ignore]
    used: set[int] = set()
    for word, t, *_ in sorted(detections, key=lambda d: d[1]):
        near = [(abs(t - (a + b) / 2), j) for j, (w, a, b) in enumerate(targets)
                if j not in used and w == word and a - tolerance <= t <= b + tolerance]  # fmt: skip
        used |= {min(near)[1]} if near else set()
    tp, n = len(used), len(detections)
    p, r = tp / n if n else 0.0, tp / len(targets) if targets else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return _Scores(round(p, 3), round(r, 3), round(f1, 3), tp, n - tp, len(targets) - tp)


def plot_stream(result: tuple, classes: Sequence[str], truth: Sequence[tuple] | None = None,
                threshold: float | None = None, title: str | None = None):  # fmt: skip
    """Posteriors over time, detections (triangles), true words (shaded) (notebook 06)."""
    import matplotlib.pyplot as plt

    (times, post, detections), (fig, ax) = result, plt.subplots(figsize=(14, 4))
    color = {c: plt.get_cmap("tab20")(k % 20) for k, c in enumerate(classes)}
    for i, c in enumerate(classes):
        filler = c in FILLER_CLASSES
        ax.plot(times, post[:, i], color="grey" if filler else color[c],
                ls=":" if c == "_silence_" else "-." if filler else "-",
                label=f"{c.strip('_')} (ignored)" if filler else c)  # fmt: skip
    if threshold is not None:
        ax.axhline(threshold, color="black", ls="--", lw=0.8, label="threshold")
    for w, s, e in truth or []:
        ax.axvspan(s, e, color=color.get(w, "lightgrey"), alpha=0.2)
        ax.text((s + e) / 2, 1.02, w, ha="center", transform=ax.get_xaxis_transform())
    for w, t, score in detections:
        ax.plot(t, score, marker="v", ms=9, color=color.get(w, "black"), mec="black")
        ax.annotate(w, (t, score), xytext=(0, 8), textcoords="offset points", ha="center")
    ax.set(xlabel="time (s)", ylabel="smoothed posterior probability", ylim=(0, 1.12))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, ncol=1 + len(classes) // 12)
    ax.set_title(title or "streaming: shaded = true words, triangles = detections", pad=14)
    fig.tight_layout()
    return fig


# --- export: ONNX, parity, latency, model card (torch.export replaced TorchScript) ---------
class _ConvSpectrogram(nn.Module):
    """torchaudio's power ``Spectrogram`` as a strided conv1d with windowed-DFT kernels: the
    classic ONNX exporter refuses torch.stft's complex output. Same numbers up to rounding."""

    def __init__(self, spec: torchaudio.transforms.Spectrogram) -> None:
        super().__init__()
        if spec.power != 2.0 or spec.normalized:
            raise ValueError("only the power spectrogram (power=2, not normalized) is exportable")
        n, w = spec.n_fft, spec.window.double()
        w = nn.functional.pad(w, ((n - len(w)) // 2, n - len(w) - (n - len(w)) // 2))
        angle = 2 * np.pi * torch.arange(n // 2 + 1.0)[:, None] * torch.arange(n) / n
        kernels = torch.cat([torch.cos(angle) * w, -torch.sin(angle) * w])  # (2 * bins, n)
        self.register_buffer("dft", kernels.float().unsqueeze(1), persistent=False)
        self.n_fft, self.hop, self.center = n, spec.hop_length, spec.center

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x = x.reshape(-1, 1, shape[-1])
        if self.center:
            x = nn.functional.pad(x, (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        re, im = nn.functional.conv1d(x, self.dft, stride=self.hop).chunk(2, dim=1)
        return (re.square() + im.square()).reshape(*shape[:-1], *re.shape[1:])


class _AvgPoolMatmul(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as ``A_h @ x @ A_w.T``: the classic ONNX exporter refuses
    adaptive pooling whose output size does not divide the input (CNNet: 47 x 17 -> 4 x 4)."""

    def __init__(self, output_size: int | tuple) -> None:
        super().__init__()
        self.size = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * 2

    def forward(self, x: Tensor) -> Tensor:
        a = []
        for n, k in zip(x.shape[-2:], self.size, strict=True):  # static for a 1-s input
            n, k, i = int(n), int(k or n), np.arange(int(k or n))[:, None]
            lo, hi = i * n // k, -(-(i + 1) * n // k)  # PyTorch's cells
            a.append(torch.from_numpy(((np.arange(n) >= lo) & (np.arange(n) < hi)) / (hi - lo)))
        return a[0].to(x) @ x @ a[1].to(x).t()


def exportable(module: nn.Module) -> nn.Module:
    """A CPU copy of ``module`` for the classic ONNX exporter: the STFT as a conv1d (torch.stft is
    complex), adaptive pooling as matrices; same weights and outputs (notebook 06)."""

    def swap(m: nn.Module) -> None:
        for name, child in m.named_children():
            if isinstance(child, torchaudio.transforms.Spectrogram):  # in every frontend
                setattr(m, name, _ConvSpectrogram(child))
            elif isinstance(child, nn.AdaptiveAvgPool2d):
                setattr(m, name, _AvgPoolMatmul(child.output_size))
            else:
                swap(child)

    out = copy.deepcopy(module).cpu().eval()
    swap(out)
    return out


def _example(batch: int) -> Tensor:
    return 0.1 * torch.randn(batch, CLIP_SAMPLES, generator=torch.Generator().manual_seed(batch))


def _export(module: nn.Module, path: Path, classes: Sequence[str], exporter: str = "auto") -> Path:
    """``model.onnx``: features inside, dynamic batch, class names in the metadata."""
    import onnx

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the classic exporter's deprecation notices
        dynamo = exporter != "legacy" and importlib.util.find_spec("onnxscript") is not None
        if exporter == "dynamo" and not dynamo:
            raise RuntimeError("the dynamo ONNX exporter needs: pip install onnxscript")
        batch = {"dynamic_shapes": ({0: torch.export.Dim("batch", max=4096)},)} if dynamo else {
            "dynamic_axes": {"audio": {0: "batch"}, "logits": {0: "batch"}}}  # fmt: skip
        torch.onnx.export(exportable(module), (_example(2),), str(path), dynamo=dynamo,
                          input_names=["audio"], output_names=["logits"], opset_version=17,
                          **batch)  # fmt: skip
    model = onnx.load(str(path))
    exporter = "dynamo" if dynamo else "legacy (TorchScript-based)"
    for key, value in {"sample_rate": str(SAMPLE_RATE), "classes": json.dumps(classes),
                       "exporter": exporter}.items():  # fmt: skip
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _runtimes(module: nn.Module, files: dict[str, Path], threads: int | None = None) -> dict:
    """``{name: fn(float32 batch) -> logits}``: eager PyTorch, its conv-STFT copy, the files."""
    import onnxruntime as ort

    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for name, m in (("pytorch eager", module), ("pytorch conv-STFT", exportable(module))):
        out[name] = lambda x, m=m: m(torch.from_numpy(x)).float().numpy()
    if "onnx" in files:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.log_severity_level = threads or torch.get_num_threads(), 3
        sess = ort.InferenceSession(str(files["onnx"]), opts, providers=["CPUExecutionProvider"])
        out["onnxruntime"] = lambda x: sess.run(None, {"audio": x})[0]
    return out


@torch.inference_mode()
def _check_parity(module: nn.Module, audio: np.ndarray, files: dict[str, Path]) -> dict:
    """Max abs difference of logits and probabilities vs eager PyTorch, top-1 agreement."""
    x = np.ascontiguousarray(audio, dtype=np.float32)
    outs = {k: f(x) for k, f in _runtimes(module, files).items()}
    ref = outs.pop("pytorch eager")
    return {k: {"logits": float(np.abs(out - ref).max()),
                "probs": float(np.abs(_softmax(out) - _softmax(ref)).max()),
                "top1_agreement": float((out.argmax(1) == ref.argmax(1)).mean()), "n_clips": len(x)}
            for k, out in outs.items()}  # fmt: skip


def measure_latency(fn: Callable[[], Any], runs: int = 100, warmup: int = 10) -> dict[str, float]:
    """Median and 90th percentile wall time of ``fn()`` in milliseconds (notebook 06)."""
    times = []
    for _ in range(warmup + runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    times = sorted(times[warmup:])
    return {"median_ms": float(np.median(times)), "p90_ms": times[int(0.9 * runs)], "runs": runs}


@torch.inference_mode()
def _latency(module: nn.Module, files: dict[str, Path], clip: np.ndarray, runs: int, threads: int):
    """Batch-1 CPU latency per 1-s clip of each runtime, all with ``threads`` threads."""
    x, before = np.asarray(clip, dtype=np.float32).reshape(1, -1), torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        fns = _runtimes(module, files, threads)
        out = {k: measure_latency(lambda f=f: f(x), runs) for k, f in fns.items() if "-" not in k}
    finally:
        torch.set_num_threads(before)
    out["machine"] = f"{os.cpu_count()} CPU cores, {threads} thread(s), torch {torch.__version__}"
    return out


def _parity_clips(audio: Any, folder: str | None, n: int = 32) -> tuple[np.ndarray, str]:
    """The clips given, or ``n`` test clips of the dataset given or trained on, or noise."""
    if isinstance(audio, (str, os.PathLike)) or audio is None and folder and Path(folder).is_dir():
        folder = data.resolve_dataset(audio or folder)
        clips = [c for c in data.build_index(folder) if c.split == "test"]
        pick = sorted(np.random.default_rng(0).permutation(len(clips))[:n])
        x = np.stack([fix_length(load_audio(clips[i].path)) for i in pick])
        return x, f"{len(x)} test clips of {folder}"
    if audio is None:
        return _example(n).numpy(), "random noise (no dataset at hand)"
    return np.asarray(audio, dtype=np.float32), f"{len(audio)} given clips"


def _model_card(meta: dict[str, Any], export: dict, parity: dict, latency: dict) -> dict:
    """The model card: what, trained on what data, measured how, known limits."""
    metrics, config = meta.get("metrics") or {}, meta.get("config") or {}
    folder = Path(str(config.get("data", "")))
    readme = folder / "README.md"  # the demo set's README opens with "SYNTHETIC"
    synthetic = folder.name != "" and ("demo" in folder.name or readme.is_file()
                                       and "SYNTHETIC" in readme.read_text()[:2000])  # fmt: skip
    measured = {k: metrics[k] for k in ("test_accuracy", "n_test", "best_val_acc") if k in metrics}
    limits = ["No test accuracy in the checkpoint: unmeasured."] * ("test_accuracy" not in metrics)
    limits += ["Trained on SYNTHETIC speech (eSpeak NG voices): a teaching artefact."] * synthetic
    limits += ["Input: 16 kHz mono float32 in [-1, 1], 16000 samples a row (predict() makes it).",
               "Knows only its classes: other words often get a confident keyword, not _unknown_.",
               "Trained on isolated 1-s clips: continuous speech needs stream(), has false alarms.",
               "Worse with far-field audio, noise, and voices or microphones unlike training's."]
    return {
        "model": {"architecture": meta.get("model_name"), "kwargs": str(meta.get("model_kwargs")),
                  "parameters": metrics.get("params"), "classes": list(meta["classes"]),
                  "input": "audio: float32 (batch, 16000), 1 s at 16 kHz in [-1, 1]",
                  "output": "logits: (batch, n_classes); softmax gives probabilities"},
        "features": {**(meta.get("feature") or {}), "inside_graph": True},
        "training_data": {"path": str(folder), "synthetic": synthetic, "task": config.get("task")},
        "metrics": {"measured_on": "the checkpoint's test split", **measured},
        "per_class": (metrics.get("test") or {}).get("per_class") or {},
        "export": export, "parity_max_abs_diff": parity, "CPU_latency_batch_1_ms": latency,
        "known_limits": limits,
    }  # fmt: skip


def _markdown(sections: dict[str, Any]) -> str:
    """Markdown: a list per section, and a table of the values that are dicts."""
    def fmt(k: str, v: Any) -> str:
        if type(v) is float and k.endswith(("acc", "accuracy", "agreement", "precision", "recall")):
            return f"{100 * v:.2f} %"  # fractions as percentages
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = []
    for key, body in [(k, v) for k, v in sections.items() if v]:
        lines += ["", f"## {key[0].upper()}{key[1:].replace('_', ' ')}", ""]
        body = body if isinstance(body, dict) else dict(enumerate(body))
        rows = {k: v for k, v in body.items() if isinstance(v, dict)}
        cols = list(next(iter(rows.values()), {}))
        lines += [f"| | {' | '.join(cols)} |", "|---" * (len(cols) + 1) + "|"] if rows else []
        for k, r in rows.items():
            lines.append(f"| {k} | {' | '.join(fmt(c, r.get(c)) for c in cols)} |")
        lines += [""] if rows and len(rows) < len(body) else []  # a list after the table
        lines += [f"- {fmt(k, v)}" if isinstance(k, int) else f"- {k}: {fmt(k, v)}"
                  for k, v in body.items() if k not in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


class _ExportReport(namedtuple("ExportReport", "files parity latency card_json card_md")):
    def summary(self) -> str:
        parts = {"files": self.files, "parity (max abs difference from eager PyTorch)": self.parity,
                 "CPU latency per 1-s clip, batch 1 (ms)": self.latency,
                 "model card": [self.card_json, self.card_md]}  # fmt: skip
        return _markdown(parts).strip()


def export_model(model: Any, out_dir: str | Path, formats: Sequence = ("onnx",),
                 *, parity_audio: Any = None, latency_runs: int = 100, latency_threads: int = 1,
                 exporter: str = "auto") -> _ExportReport:  # fmt: skip
    """Write ``model.onnx`` (TorchScript, deprecated, is gone), check parity with PyTorch on
    ``parity_audio`` (clips, a dataset, default: the checkpoint's), time batch-1 CPU latency and
    write ``model_card.json``/``.md`` (notebook 06)."""
    if set(formats) != {"onnx"}:
        raise ValueError(f"formats {list(formats)}: only 'onnx' (TorchScript is deprecated)")
    module, classes, meta = load_inference_model(model)  # a checkpoint: on the CPU
    module, out = copy.deepcopy(module).cpu().eval(), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"onnx": _export(module, out / "model.onnx", classes, exporter)}
    parity_audio, source = _parity_clips(parity_audio, (meta.get("config") or {}).get("data"))
    parity = _check_parity(module, parity_audio, files)
    latency = {}
    if latency_runs:
        latency = _latency(module, files, parity_audio[0], latency_runs, latency_threads)
    info = {"torch": torch.__version__, "parity_clips": source,
            **{k: f"{p.name}, sha256 {hashlib.sha256(p.read_bytes()).hexdigest()[:16]}"
               for k, p in files.items()}}  # fmt: skip
    card = _model_card(meta, info, parity, latency)
    js, md = out / "model_card.json", out / "model_card.md"
    js.write_text(json.dumps(card, indent=2, default=str))
    md.write_text(f"# Model card: {meta.get('model_name')} keyword spotter\n" + _markdown(card))
    return _ExportReport(files, parity, latency, js, md)
