"""Labelled plots for audio: waveforms, spectra, spectrograms, filterbanks (notebooks 01-02).

Every function draws into the ``ax`` you pass (or a new figure when ``ax`` is None), labels both
axes with units, adds a colour bar to images, puts low frequencies at the bottom
(``origin="lower"``) and returns the axes or figure. Nothing here changes matplotlib's global
settings (no ``rcParams``, no ``plt.xlabel`` on the "current" axes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torchaudio
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .features import LogMel, Mfcc, natural_log_to_db, power_spectrogram, to_db

__all__ = [
    "plot_waveform",
    "plot_waveforms",
    "plot_sampling",
    "plot_spectrum",
    "plot_spectrogram",
    "plot_mel_filterbank",
    "plot_feature_trio",
    "plot_png_grid",
    "mel_band_centres",
]


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if not x.is_floating_point():
            x = x.float() / 32768.0
        return x.numpy()
    x = np.asarray(x)
    if x.dtype == np.int16:
        return x.astype(np.float32) / 32768.0
    return x


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def plot_waveform(
    x,
    sample_rate: int = 16000,
    ax: Axes | None = None,
    title: str | None = None,
    label: str | None = None,
    color: str | None = None,
    ylim: tuple[float, float] | None = (-1.0, 1.0),
    **plot_kwargs,
) -> Axes:
    """Amplitude against time in seconds (notebook 01).

    ``x``: 1-D float in [-1, 1] or int16 PCM (scaled to [-1, 1]); a ``(channels, T)`` array
    draws one line per channel. ``ylim=None`` zooms to the data.
    """
    ax = _axes(ax, (8, 2.5))
    x = _np(x)
    t = np.arange(x.shape[-1]) / sample_rate
    if x.ndim == 1:
        ax.plot(t, x, lw=0.7, label=label, color=color, **plot_kwargs)
    else:
        names = {0: " (left)", 1: " (right)"} if len(x) == 2 else {}
        for c, ch in enumerate(x):
            ax.plot(t, ch, lw=0.7, label=f"channel {c}{names.get(c, '')}", alpha=0.8, **plot_kwargs)
        ax.legend(loc="upper right")
    if label is not None:
        ax.legend(loc="upper right")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("amplitude (full scale = 1)")
    ax.set_xlim(0, x.shape[-1] / sample_rate)
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax


def plot_waveforms(
    clips: Mapping[str, np.ndarray],
    sample_rate: int = 16000,
    ncols: int = 2,
    height: float = 2.2,
) -> Figure:
    """Several clips side by side with shared axes, titled by their keys (notebook 01)."""
    n = len(clips)
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(5 * ncols, height * nrows),
        sharex=True,
        sharey=True,
        layout="constrained",
        squeeze=False,
    )
    for ax, (name, x) in zip(axes.flat, clips.items(), strict=False):
        plot_waveform(x, sample_rate, ax=ax, title=name)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    for ax in axes.flat:
        ax.label_outer()  # shared axes: label only the outer ones
    return fig


def plot_sampling(
    freq: float,
    sample_rate: float,
    duration: float = 0.002,
    ax: Axes | None = None,
) -> Axes:
    """A "continuous" sine, its samples, and the lowest-frequency sine through them (notebook 01).

    Shows aliasing: above ``sample_rate / 2`` the samples fit a slower sine just as well, and
    that slower sine is what you hear after sampling.
    """
    ax = _axes(ax, (8, 2.8))
    fine = np.linspace(0, duration, 2000)
    ts = np.arange(0, duration + 1e-12, 1 / sample_rate)
    # the samples of sin(2 pi f t) equal those of sin(2 pi a t) with a = f - k * fs (signed)
    signed_alias = freq - sample_rate * round(freq / sample_rate)
    alias = abs(signed_alias)
    ax.plot(fine * 1e3, np.sin(2 * np.pi * freq * fine), lw=1, label=f"original {freq:.0f} Hz")
    if alias != freq:
        ax.plot(
            fine * 1e3,
            np.sin(2 * np.pi * signed_alias * fine),
            "--",
            lw=1.2,
            label=f"alias {alias:.0f} Hz",
        )
    ax.plot(
        ts * 1e3, np.sin(2 * np.pi * freq * ts), "ko", ms=4, label=f"samples @ {sample_rate:g} Hz"
    )
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("amplitude")
    ax.set_xlim(0, duration * 1e3)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"{freq:g} Hz sampled at {sample_rate:g} Hz (Nyquist {sample_rate / 2:g} Hz)")
    ax.grid(alpha=0.3)
    return ax


def plot_spectrum(
    x,
    sample_rate: int = 16000,
    ax: Axes | None = None,
    title: str | None = None,
    label: str | None = None,
    floor_db: float = -100.0,
) -> Axes:
    """Magnitude of the Fourier transform of the whole clip, in dB, against Hz (notebook 02).

    Hann-windowed ``rfft``; 0 dB = a full-scale sine. Values below ``floor_db`` are clipped.
    """
    ax = _axes(ax, (8, 2.8))
    x = _np(x).astype(np.float64)
    w = np.hanning(len(x))
    mag = np.abs(np.fft.rfft(x * w)) / (w.sum() / 2)
    freqs = np.fft.rfftfreq(len(x), 1 / sample_rate)
    ax.plot(freqs, np.maximum(20 * np.log10(np.maximum(mag, 1e-12)), floor_db), lw=0.8, label=label)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("magnitude (dB re full-scale sine)")
    ax.set_xlim(0, sample_rate / 2)
    if label is not None:
        ax.legend(loc="upper right")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    return ax


def mel_band_centres(
    n_mels: int = 40, f_min: float = 20.0, f_max: float = 8000.0, mel_scale: str = "htk"
) -> np.ndarray:
    """Centre frequency in Hz of each mel band (notebook 02)."""
    if mel_scale == "htk":
        to_mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)
        to_hz = lambda m: 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)
    else:  # slaney: linear below 1 kHz, logarithmic above
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0

        def to_mel(f):
            f = np.asarray(f, float)
            lin = f / f_sp
            return np.where(f >= min_log_hz, min_log_mel + np.log(f / min_log_hz) / logstep, lin)

        def to_hz(m):
            m = np.asarray(m, float)
            return np.where(
                m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m
            )

    mels = np.linspace(to_mel(f_min), to_mel(f_max), n_mels + 2)
    return to_hz(mels[1:-1])


def plot_spectrogram(
    spec,
    sample_rate: int = 16000,
    hop_length: int = 160,
    ax: Axes | None = None,
    y_axis: str = "hz",
    title: str | None = None,
    cbar_label: str = "power (dB)",
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "magma",
    mel_range: tuple[float, float] = (20.0, 8000.0),
    colorbar: bool = True,
) -> Axes:
    """Any 2-D time-frequency array ``(rows, frames)`` as an image, time in seconds (notebook 02).

    ``y_axis``: 'hz' (rows are STFT bins 0..sample_rate/2), 'mel' (rows are mel bands; ticks show
    their centre frequencies for ``mel_range``), 'mfcc' (coefficient index) or 'bins' (row index).
    Frame ``k`` is drawn centred at ``k * hop_length / sample_rate`` seconds. Pass the values
    already in the unit of ``cbar_label`` (e.g. via ``to_db``); ``vmin``/``vmax`` fix the colour
    range (use the same ones to compare images).
    """
    ax = _axes(ax, (8, 3))
    s = _np(spec)
    if s.ndim != 2:
        raise ValueError(f"plot_spectrogram wants a 2-D array (rows, frames), got {s.shape}")
    rows, frames = s.shape
    dt = hop_length / sample_rate
    x0, x1 = -dt / 2, (frames - 0.5) * dt
    if y_axis == "hz":
        df = sample_rate / (2 * (rows - 1)) if rows > 1 else sample_rate / 2
        extent = (x0, x1, -df / 2, (rows - 0.5) * df)
        ylabel = "frequency (Hz)"
    elif y_axis in ("mel", "mfcc", "bins"):
        extent = (x0, x1, -0.5, rows - 0.5)
        ylabel = {
            "mel": "mel band (centre Hz)",
            "mfcc": "MFCC coefficient",
            "bins": "row",
        }[y_axis]
    else:
        raise ValueError(f"y_axis must be 'hz', 'mel', 'mfcc' or 'bins', got {y_axis!r}")
    im = ax.imshow(
        s,
        origin="lower",
        aspect="auto",
        extent=extent,
        cmap=cmap,
        vmin=vmin,
        vmax=vmax,
        interpolation="nearest",
    )
    if y_axis == "mel":
        centres = mel_band_centres(rows, *mel_range)
        ticks = np.unique(np.linspace(0, rows - 1, min(rows, 6)).round().astype(int))
        ax.set_yticks(ticks)
        ax.set_yticklabels([f"{i} ({centres[i]:.0f})" for i in ticks])
    ax.set_xlabel("time (s)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, label=cbar_label, pad=0.01)
    return ax


def plot_mel_filterbank(
    n_fft: int = 480,
    n_mels: int = 40,
    sample_rate: int = 16000,
    f_min: float = 20.0,
    f_max: float = 8000.0,
    mel_scale: str = "htk",
    norm: str | None = None,
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """The triangular mel filters (torchaudio's ``melscale_fbanks``) against Hz (notebook 02).

    Each line is the weight one mel band gives each STFT bin: narrow at low frequencies, wide at
    high ones, like the ear's frequency resolution. ``norm='slaney'`` scales each triangle to
    unit area (librosa's default), so wide filters get lower peaks.
    """
    ax = _axes(ax, (8, 3))
    fb = torchaudio.functional.melscale_fbanks(
        n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate, norm=norm, mel_scale=mel_scale
    ).numpy()
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, n_mels))
    for m in range(n_mels):
        ax.plot(freqs, fb[:, m], color=colours[m], lw=0.9)
    ax.set_xlabel("frequency (Hz)")
    ax.set_ylabel("filter weight")
    ax.set_xlim(0, sample_rate / 2)
    ax.set_title(
        title
        or f"{n_mels} mel filters ({mel_scale} scale, norm={norm}), {f_min:g}-{f_max:g} Hz, "
        f"n_fft={n_fft}"
    )
    ax.grid(alpha=0.3)
    return ax


def plot_feature_trio(
    x,
    sample_rate: int = 16000,
    n_fft: int = 480,
    hop_length: int = 160,
    n_mels: int = 40,
    n_mfcc: int = 13,
    title: str | None = None,
    top_db: float = 80.0,
) -> Figure:
    """One clip four ways, on one time axis: waveform, power spectrogram (dB), log-mel (dB), MFCC.

    All features use the same window (``n_fft``) and hop, computed with this package's
    :class:`~audiocourse.features.LogMel` / :class:`~audiocourse.features.Mfcc` (notebook 02).
    """
    wav = torch.as_tensor(_np(x), dtype=torch.float32)
    spec_db = to_db(power_spectrogram(wav, n_fft, hop_length), top_db=top_db)
    logmel = LogMel(sample_rate, n_fft, hop_length, n_mels)
    mel_db = natural_log_to_db(logmel(wav))
    mfcc = Mfcc(sample_rate, n_mfcc, n_fft, hop_length, n_mels)(wav)
    fig, axes = plt.subplots(
        4,
        1,
        figsize=(9, 10),
        sharex=True,
        layout="constrained",
        gridspec_kw={"height_ratios": [1, 2, 1.6, 1.2]},
    )
    plot_waveform(wav, sample_rate, ax=axes[0], ylim=None)
    axes[0].set_title("waveform")
    axes[0].set_xlabel("")
    lo = float(mel_db.max()) - top_db
    plot_spectrogram(
        spec_db,
        sample_rate,
        hop_length,
        ax=axes[1],
        y_axis="hz",
        title=f"power spectrogram, n_fft={n_fft}, hop={hop_length} ({spec_db.shape[0]} bins)",
    )
    plot_spectrogram(
        mel_db.clamp_min(lo),
        sample_rate,
        hop_length,
        ax=axes[2],
        y_axis="mel",
        title=f"log-mel spectrogram ({n_mels} mel bands)",
    )
    # c0 (the overall log-energy) dwarfs the others: scale colours to c1.. and let c0 saturate
    lim = float(mfcc[1:].abs().max()) if n_mfcc > 1 else None
    plot_spectrogram(
        mfcc,
        sample_rate,
        hop_length,
        ax=axes[3],
        y_axis="mfcc",
        cmap="coolwarm",
        cbar_label="coefficient value",
        vmin=-lim if lim else None,
        vmax=lim,
        title=f"MFCC: first {n_mfcc} DCT coefficients of the log-mel (c0 = overall level, "
        "saturated)",
    )
    for ax in axes[1:]:
        ax.set_xlabel("")
    axes[3].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    return fig


def plot_png_grid(
    files: Sequence[str | Path],
    ncols: int = 4,
    titles: Sequence[str] | None = None,
    size: float = 2.2,
) -> Figure:
    """Exported spectrogram PNGs as stored: grey levels 0-255, pixel rows (notebook 02)."""
    from PIL import Image

    n = len(files)
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(size * ncols * 1.2, size * nrows),
        layout="constrained",
        squeeze=False,
    )
    im = None
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.set_visible(False)
            continue
        img = np.asarray(Image.open(files[i]).convert("L"))
        # row 0 of the file is the highest frequency: flip back so origin="lower" = lowest bin
        im = ax.imshow(img[::-1], cmap="gray", vmin=0, vmax=255, aspect="auto", origin="lower")
        ax.set_title(titles[i] if titles else Path(files[i]).name, fontsize=8)
        ax.set_xlabel("frame (pixel column)")
        ax.set_ylabel("freq. bin (pixel row)")
    if im is not None:
        fig.colorbar(im, ax=axes, label="grey level (fixed dB range)", shrink=0.8)
    return fig
