"""Labelled plots for audio: waveforms, spectra, spectrograms, filterbanks (notebooks 01-02).

Every function draws into the ``ax`` you pass (or a new figure), labels both axes with units,
adds a colour bar to images, puts low frequencies at the bottom (``origin="lower"``) and returns
the axes or figure. Nothing here changes matplotlib's global settings.
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

from .features import DbSpectrogram, LogMel, Mfcc

__all__ = [
    "plot_waveform", "plot_waveforms", "plot_sampling", "plot_spectrum", "plot_spectrogram",
    "plot_mel_filterbank", "plot_feature_trio", "plot_png_grid",
]


def _np(x) -> np.ndarray:
    """Tensor or array -> NumPy; int16 PCM is scaled to [-1, 1)."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    return plt.subplots(figsize=figsize, layout="constrained")[1] if ax is None else ax


def _finish(ax: Axes, xlabel: str, ylabel: str, title: str | None, grid: bool = True) -> Axes:
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if title:
        ax.set_title(title)
    if grid:
        ax.grid(alpha=0.3)
    return ax


def plot_waveform(
    x, sample_rate: int = 16000, ax: Axes | None = None, title: str | None = None,
    label: str | None = None, color: str | None = None,
    ylim: tuple[float, float] | None = (-1.0, 1.0), **plot_kwargs,
) -> Axes:
    """Amplitude against time in seconds (notebook 01).

    ``x``: float in [-1, 1] or int16 PCM; ``(channels, T)`` draws one line per channel.
    ``ylim=None`` zooms to the data.
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
    if label is not None or x.ndim > 1:
        ax.legend(loc="upper right")
    ax.set_xlim(0, x.shape[-1] / sample_rate)
    if ylim is not None:
        ax.set_ylim(*ylim)
    return _finish(ax, "time (s)", "amplitude (full scale = 1)", title)


def plot_waveforms(
    clips: Mapping[str, np.ndarray], sample_rate: int = 16000, ncols: int = 2, height: float = 2.2
) -> Figure:
    """Several clips side by side with shared axes, titled by their keys (notebook 01)."""
    nrows = max(1, math.ceil(len(clips) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(5 * ncols, height * nrows), sharex=True, sharey=True,
        layout="constrained", squeeze=False,
    )  # fmt: skip
    for ax, (name, x) in zip(axes.flat, clips.items(), strict=False):
        plot_waveform(x, sample_rate, ax=ax, title=name)
    for i, ax in enumerate(axes.flat):
        ax.set_visible(i < len(clips))
        ax.label_outer()  # shared axes: label only the outer ones
    return fig


def plot_sampling(
    freq: float, sample_rate: float, duration: float = 0.002, ax: Axes | None = None
) -> Axes:
    """A "continuous" sine, its samples and the slowest sine through them (notebook 01).

    Above ``sample_rate / 2`` the samples fit a slower sine just as well: the alias you hear.
    """
    ax = _axes(ax, (8, 2.8))
    fine = np.linspace(0, duration, 2000)
    ts = np.arange(0, duration + 1e-12, 1 / sample_rate)
    # the samples of sin(2 pi f t) equal those of sin(2 pi a t) with a = f - k * fs (signed)
    alias = freq - sample_rate * round(freq / sample_rate)
    ax.plot(fine * 1e3, np.sin(2 * np.pi * freq * fine), lw=1, label=f"original {freq:.0f} Hz")
    if abs(alias) != freq:
        sine = np.sin(2 * np.pi * alias * fine)
        ax.plot(fine * 1e3, sine, "--", lw=1.2, label=f"alias {abs(alias):.0f} Hz")
    samples = np.sin(2 * np.pi * freq * ts)
    ax.plot(ts * 1e3, samples, "ko", ms=4, label=f"samples @ {sample_rate:g} Hz")
    ax.set_xlim(0, duration * 1e3)
    ax.legend(loc="upper right", fontsize=8)
    title = f"{freq:g} Hz sampled at {sample_rate:g} Hz (Nyquist {sample_rate / 2:g} Hz)"
    return _finish(ax, "time (ms)", "amplitude (full scale)", title)


def plot_spectrum(
    x, sample_rate: int = 16000, ax: Axes | None = None, title: str | None = None,
    label: str | None = None,
) -> Axes:
    """Magnitude of the whole clip's Fourier transform in dB against Hz (notebook 02).

    Hann-windowed ``rfft``; 0 dB is a full-scale sine, the floor -100 dB.
    """
    ax = _axes(ax, (8, 2.8))
    x = _np(x).astype(np.float64)
    w = np.hanning(len(x))
    mag = np.abs(np.fft.rfft(x * w)) / (w.sum() / 2)
    freqs = np.fft.rfftfreq(len(x), 1 / sample_rate)
    ax.plot(freqs, 20 * np.log10(np.maximum(mag, 1e-5)), lw=0.8, label=label)
    ax.set_xlim(0, sample_rate / 2)
    if label is not None:
        ax.legend(loc="upper right")
    return _finish(ax, "frequency (Hz)", "magnitude (dB re full-scale sine)", title)


def _mel_band_centres(n_mels: int = 40, f_min: float = 20.0, f_max: float = 8000.0) -> np.ndarray:
    """Centre frequency in Hz of each (HTK) mel band, as :class:`LogMel` uses (notebook 02)."""
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
    mels = np.linspace(mel(f_min), mel(f_max), n_mels + 2)[1:-1]
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


def plot_spectrogram(
    spec, sample_rate: int = 16000, hop_length: int = 160, ax: Axes | None = None,
    y_axis: str = "hz", title: str | None = None, cbar_label: str = "dB re 1 (raw power)",
    vmin: float | None = None, vmax: float | None = None, cmap: str = "magma",
    mel_range: tuple[float, float] = (20.0, 8000.0),
) -> Axes:
    """A 2-D time-frequency array ``(rows, frames)`` as an image, time in seconds (notebook 02).

    ``y_axis``: 'hz' (STFT bins 0..sample_rate/2), 'mel' (mel bands, ticks at their centre
    frequencies for ``mel_range``) or 'mfcc' (coefficient index). Frame ``k`` is centred at
    ``k * hop_length / sample_rate`` s. Pass values in the unit of ``cbar_label``;
    ``vmin``/``vmax`` fix the colour range (use the same ones to compare images).
    """
    ax = _axes(ax, (8, 3))
    s = _np(spec)
    if s.ndim != 2 or y_axis not in ("hz", "mel", "mfcc"):
        raise ValueError(f"want a (rows, frames) array and y_axis hz/mel/mfcc: {s.shape}, {y_axis}")
    rows, frames = s.shape
    dt = hop_length / sample_rate
    df = sample_rate / (2 * (rows - 1)) if y_axis == "hz" and rows > 1 else 1.0
    extent = (-dt / 2, (frames - 0.5) * dt, -df / 2, (rows - 0.5) * df)
    im = ax.imshow(s, origin="lower", aspect="auto", extent=extent, cmap=cmap, vmin=vmin,
                   vmax=vmax, interpolation="nearest")  # fmt: skip
    if y_axis == "mel":
        centres = _mel_band_centres(rows, *mel_range)
        ticks = np.unique(np.linspace(0, rows - 1, min(rows, 6)).round().astype(int))
        ax.set_yticks(ticks, [f"{i} ({centres[i]:.0f})" for i in ticks])
    ax.figure.colorbar(im, ax=ax, label=cbar_label, pad=0.01)
    ylabel = {"hz": "frequency (Hz)", "mel": "mel band (centre Hz)", "mfcc": "MFCC coefficient"}
    return _finish(ax, "time (s)", ylabel[y_axis], title, grid=False)


def plot_mel_filterbank(
    n_fft: int = 480, n_mels: int = 40, sample_rate: int = 16000, f_min: float = 20.0,
    f_max: float = 8000.0, mel_scale: str = "htk", norm: str | None = None,
    ax: Axes | None = None, title: str | None = None,
) -> Axes:
    """The triangular mel filters (torchaudio's ``melscale_fbanks``) against Hz (notebook 02).

    Narrow at low frequencies, wide at high ones, like the ear's resolution; ``norm='slaney'``
    scales each triangle to unit area (librosa's default), so wide filters get lower peaks.
    """
    ax = _axes(ax, (8, 3))
    n_freqs = n_fft // 2 + 1
    fb = torchaudio.functional.melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate,
                                               norm=norm, mel_scale=mel_scale).numpy()
    freqs = np.linspace(0, sample_rate / 2, n_freqs)
    colours = plt.get_cmap("viridis")(np.linspace(0, 1, n_mels))
    for m in range(n_mels):
        ax.plot(freqs, fb[:, m], color=colours[m], lw=0.9)
    ax.set_xlim(0, sample_rate / 2)
    title = title or (f"{n_mels} mel filters ({mel_scale} scale, norm={norm}), "
                      f"{f_min:g}-{f_max:g} Hz, n_fft={n_fft}")
    return _finish(ax, "frequency (Hz)", "filter weight", title)


def plot_feature_trio(
    x, sample_rate: int = 16000, n_fft: int = 480, hop_length: int = 160, n_mels: int = 40,
    n_mfcc: int = 13, title: str | None = None, top_db: float = 80.0,
) -> Figure:
    """One clip as waveform, power spectrogram, log-mel and MFCC on one time axis (notebook 02).

    Same window and hop for all; the spectrogram and log-mel in dB, ``top_db`` below their peak.
    """
    wav = torch.as_tensor(_np(x), dtype=torch.float32)
    stft = dict(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length)
    spec_db = DbSpectrogram(**stft, top_db=top_db)(wav)
    mel_db = LogMel(**stft, n_mels=n_mels)(wav) * (10 / math.log(10))  # natural log -> dB
    mfcc = Mfcc(n_mfcc, **stft, n_mels=n_mels)(wav)
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True, layout="constrained",
                             gridspec_kw={"height_ratios": [1, 2, 1.6, 1.2]})  # fmt: skip
    plot_waveform(wav, sample_rate, ax=axes[0], ylim=None, title="waveform")
    bins = f"n_fft={n_fft}, hop={hop_length} ({spec_db.shape[0]} bins)"
    plot_spectrogram(spec_db, sample_rate, hop_length, axes[1], title=f"power spectrogram, {bins}")
    plot_spectrogram(mel_db.clamp_min(float(mel_db.max()) - top_db), sample_rate, hop_length,
                     axes[2], "mel", f"log-mel spectrogram ({n_mels} mel bands)")  # fmt: skip
    # c0 (the overall log-energy) dwarfs the others: scale colours to c1.. and let c0 saturate
    lim = float(mfcc[1:].abs().max()) if n_mfcc > 1 else None
    plot_spectrogram(
        mfcc, sample_rate, hop_length, axes[3], "mfcc", cmap="coolwarm",
        cbar_label="coefficient value", vmin=-lim if lim else None, vmax=lim,
        title=f"MFCC: first {n_mfcc} DCT coefficients of the log-mel (c0 = level, saturated)",
    )  # fmt: skip
    for ax in axes[:-1]:
        ax.set_xlabel("")
    if title:
        fig.suptitle(title)
    return fig


def plot_png_grid(
    files: Sequence[str | Path], ncols: int = 4, titles: Sequence[str] | None = None,
    size: float = 2.2,
) -> Figure:
    """Exported spectrogram PNGs as stored: grey levels 0-255, pixel rows (notebook 02)."""
    from PIL import Image

    nrows = max(1, math.ceil(len(files) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols * 1.2, size * nrows),
                             layout="constrained", squeeze=False)  # fmt: skip
    im = None
    for i, ax in enumerate(axes.flat):
        ax.set_visible(i < len(files))
        if i >= len(files):
            continue
        img = np.asarray(Image.open(files[i]).convert("L"))
        # row 0 of the file is the highest frequency: flip back so origin="lower" = lowest bin
        im = ax.imshow(img[::-1], cmap="gray", vmin=0, vmax=255, aspect="auto", origin="lower")
        title = titles[i] if titles else Path(files[i]).name
        _finish(ax, "frame (pixel column)", "freq. bin (pixel row)", None, grid=False)
        ax.set_title(title, fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes, label="grey level (fixed dB range)", shrink=0.8)
    return fig
