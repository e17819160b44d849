"""Tests for audiocourse.infer: predict on any input, streaming KWS, export parity, CLI.

Most tests use ``ToneNet``, a deterministic stand-in whose answer depends on the audio: the
course's real log-mel frontend, then "which of three mel regions holds the energy" (tone words
'low' 400 Hz, 'mid' 1200 Hz, 'high' 3000 Hz), '_silence_' for quiet input and '_unknown_' for
broadband sound. A resampling, downmix, cropping or windowing bug changes its answer (see
``test_a_wrong_sample_rate_changes_the_answer``), and it needs no training.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from scipy.signal import resample_poly
from torch import nn

from audiocourse import infer
from audiocourse.data import AudioError, SplitData
from audiocourse.features import LogMel

SR = 16000
CLASSES = ["_silence_", "_unknown_", "low", "mid", "high"]
FREQS = {"low": 400.0, "mid": 1200.0, "high": 3000.0}


class ToneNet(nn.Module):
    """Log-mel -> band-energy fractions and log energy -> fixed linear layer -> logits."""

    def __init__(self) -> None:
        super().__init__()
        self.frontend = LogMel()
        fb = self.frontend.mel.mel_scale.fb  # (241 frequency bins, 40 mel bands)
        w = torch.zeros(len(CLASSES), 41)
        b = torch.zeros(len(CLASSES))
        for word, f in FREQS.items():
            band = int(fb[int(round(f / 8000 * 240))].argmax())
            w[CLASSES.index(word), max(0, band - 1) : band + 2] = 20.0
        w[0, 40], b[0] = -4.0, 4.0 * math.log(1e-2 * 101 * 40)  # silence: low total energy
        b[1] = 8.0  # unknown: energy not concentrated in one tone region
        self.register_buffer("w", w)
        self.register_buffer("b", b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = torch.exp(self.frontend(x)).mean(-1)  # (B, 40) mean mel power
        e = p.sum(-1, keepdim=True)
        return torch.cat([p / e, torch.log(e)], dim=-1) @ self.w.T + self.b


@pytest.fixture(scope="module")
def tonenet() -> tuple[nn.Module, list[str]]:
    return ToneNet().eval(), CLASSES


def tone_word(word: str, sr: int = SR, n: int | None = None, at: float = 0.3, dur: float = 0.4):
    """A 1-s clip (or ``n`` samples) at ``sr`` with a Hann-shaped tone burst, faint noise."""
    n = n or sr
    rng = np.random.default_rng([zlib.crc32(word.encode()), sr, n])
    x = 0.002 * rng.standard_normal(n)
    a, d = int(at * sr), int(dur * sr)
    t = np.arange(d) / sr
    x[a : a + d] += 0.4 * np.sin(2 * np.pi * FREQS[word] * t) * np.hanning(d)
    return x.astype(np.float32)


# --------------------------------------------------------------------------- predict


@pytest.mark.parametrize("word", list(FREQS))
def test_predict_same_word_for_rate_channels_length_and_format(tmp_path, tonenet, word):
    x16 = tone_word(word)
    ref = infer.predict(x16, tonenet, sample_rate=SR)
    assert ref[0].word == word and ref[0].prob > 0.9
    assert len(ref) == 3 and abs(sum(p.prob for p in infer.predict(x16, tonenet, SR, 5)) - 1) < 1e-5

    x44 = resample_poly(x16, 441, 160).astype(np.float32)  # 44.1 kHz
    sf.write(tmp_path / "a44.wav", x44, 44100, subtype="PCM_16")
    stereo = np.stack([x44, 0.3 * x44], axis=1)  # (T, 2): soundfile's layout
    sf.write(tmp_path / "stereo.wav", stereo, 44100, subtype="FLOAT")
    x22 = resample_poly(x16, 441, 320).astype(np.float32)
    sf.write(tmp_path / "a22.flac", x22, 22050)
    sf.write(tmp_path / "a48.ogg", resample_poly(x16, 3, 1).astype(np.float32), 48000)
    short = x16[int(0.25 * SR) : int(0.75 * SR)]  # 0.5 s around the burst
    long = 0.002 * np.random.default_rng(1).standard_normal(6 * SR).astype(np.float32)
    long[int(3.3 * SR) : int(3.3 * SR) + SR] += x16  # the word 3.3 s into 6 s

    cases = {
        "44.1 kHz file": (tmp_path / "a44.wav", None),
        "stereo file": (tmp_path / "stereo.wav", None),
        "22.05 kHz FLAC": (tmp_path / "a22.flac", None),
        "48 kHz OGG": (tmp_path / "a48.ogg", None),
        "44.1 kHz array": (x44, 44100),
        "stereo array (C, T)": (np.stack([x16, x16]), SR),
        "int16 array": ((x16 * 32767).astype(np.int16), SR),
        "file bytes": ((tmp_path / "a44.wav").read_bytes(), None),
        "tensor": (torch.from_numpy(x16), SR),
        "short 0.5 s": (short, SR),
        "long 6 s": (long, SR),
    }
    for name, (src, sr) in cases.items():
        top = infer.predict(src, tonenet, sample_rate=sr)
        assert top[0].word == word, f"{name}: {top}"
        assert top[0].prob > 0.9, f"{name}: {top}"


def test_a_wrong_sample_rate_changes_the_answer(tonenet):
    """The invariance test above can fail: 44.1 kHz audio read as 16 kHz is another 'word'."""
    x44 = resample_poly(tone_word("mid"), 441, 160).astype(np.float32)
    assert infer.predict(x44, tonenet, sample_rate=44100)[0].word == "mid"
    assert infer.predict(x44, tonenet, sample_rate=SR)[0].word != "mid"


def test_long_input_uses_the_loudest_second(tonenet):
    x = np.zeros(5 * SR, np.float32)
    x[int(3.6 * SR) : int(4.6 * SR)] = tone_word("high")
    assert infer.predict(x[:SR], tonenet, SR)[0].word == "_silence_"  # the first second
    assert infer.predict(x, tonenet, SR)[0].word == "high"


def test_every_window_without_smoothing(tonenet):
    """stream(..., smooth_ms=hop_ms) gives the class probabilities of each 1-s window."""
    x = np.zeros(4 * SR, np.float32)
    x[:SR] += tone_word("low")
    x[int(2.5 * SR) : int(3.5 * SR)] += tone_word("high")
    times, post, _ = infer.stream(x, tonenet, SR, hop_ms=500, smooth_ms=500)
    assert times.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]  # window centres
    top = [CLASSES[i] for i in post.argmax(axis=1)]
    assert top[1] == "low" and top[6] == "high" and top[4] == "_silence_"  # 1.5-2.5 s is empty


def test_model_forms(tonenet):
    model, classes = tonenet
    x = tone_word("mid")
    assert infer.predict(x, (model, {"classes": classes}), SR) == infer.predict(x, tonenet, SR)
    with pytest.raises(TypeError, match="class names"):
        infer.predict(x, model, SR)
    with pytest.raises(FileNotFoundError):
        infer.predict(x, "no/such/checkpoint.pt", SR)


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_audio_error_naming_the_file(tmp_path, tonenet):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.ogg"
    text.write_text("this is not audio\n" * 50)
    silent = tmp_path / "zero_frames.wav"
    sf.write(silent, np.zeros(0, np.float32), SR)
    for path in (empty, garbage, text, silent, tmp_path / "missing.wav", tmp_path):
        with pytest.raises(AudioError) as err:
            infer.predict(path, tonenet)
        assert path.name in str(err.value)
    with pytest.raises(AudioError, match="WebM"):
        infer.predict(b"\x1aE\xdf\xa3" + b"\x00" * 100, tonenet)
    with pytest.raises(AudioError, match="NaN"):
        infer.predict(np.full(SR, np.nan, np.float32), tonenet, SR)
    with pytest.raises(AudioError, match="no audio"):
        infer.predict(np.zeros(0, np.float32), tonenet, SR)
    with pytest.raises(ValueError, match="sample_rate"):
        infer.predict(tone_word("mid"), tonenet)  # an array needs its rate


# --------------------------------------------------------------------------- streaming


class CountingModule(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls, self.rows = inner, 0, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += x.shape[0]
        return self.inner(x)


def _tone_sentence(seed: int = 0, gap_s=(1.0, 1.5)):
    rng = np.random.default_rng(seed)
    words = ["low", "mid", "high", "_unknown_", "mid", "low", "high", "high", "low", "mid"]
    clips = []
    for w in words:
        if w == "_unknown_":  # broadband burst: a non-keyword that must not fire
            x = np.zeros(SR, np.float32)
            x[4000:11000] = 0.2 * rng.standard_normal(7000) * np.hanning(7000)
            clips.append(x)
        else:
            clips.append(tone_word(w, at=rng.uniform(0.1, 0.5), dur=rng.uniform(0.25, 0.45)))
    noise = 0.1 * rng.standard_normal((4, SR))
    return infer.make_sentence(clips, words, noise, gap_s=gap_s, seed=seed, noise_gain=0.05)


def test_make_sentence_places_words_where_truth_says():
    audio, truth = _tone_sentence()
    assert len(truth) == 10 and audio.dtype == np.float32
    starts = [s for _, s, _ in truth]
    assert starts == sorted(starts) and truth[-1][2] < len(audio) / SR
    for (w, s, e), (_, s2, _) in zip(
        truth, truth[1:] + [(None, len(audio) / SR, None)], strict=True
    ):
        assert 1.0 <= s2 - e <= 1.5 + 1e-3  # the gaps asked for
        seg = audio[int(s * SR) : int(e * SR)]
        gap = audio[int(e * SR) + 800 : int(s2 * SR) - 800]
        assert np.sqrt(np.mean(seg**2)) > 3 * np.sqrt(np.mean(gap**2)), w  # the word is there


def test_make_sentence_truth_span_on_a_noisy_clip():
    """A clip 17 dB above its own noise: a -30 dB cut kept all 1 s; the span is the word's."""
    rng = np.random.default_rng(0)
    clip = (0.05 * rng.standard_normal(SR)).astype(np.float32)
    clip[6000:10000] += 0.5 * np.sin(2 * np.pi * 440 * np.arange(4000) / SR).astype(np.float32)
    _, [(word, start, end)] = infer.make_sentence([clip], ["yes"], gap_s=(0.5, 0.5))
    assert word == "yes" and start == 0.5
    assert 0.4 <= end - start <= 0.5  # 0.25 s of word + 0.1 s either side (frame rounding)


def test_stream_finds_every_tone_word_in_batches(tonenet):
    audio, truth = _tone_sentence()
    model = CountingModule(tonenet[0])
    res = infer.stream(audio, (model, CLASSES), SR, hop_ms=100, threshold=0.6, batch_size=64)
    times, post, dets = res
    assert np.allclose(np.diff(times), 0.1) and times[0] == 0.0
    assert times[-1] >= len(audio) / SR - 0.1
    assert post.shape == (len(times), len(CLASSES))
    assert np.allclose(post.sum(1), 1, atol=1e-5)
    assert model.rows == len(times) and model.calls == math.ceil(len(times) / 64)
    keywords = [w for w, _, _ in truth if w not in infer.FILLER_CLASSES]
    assert [d.word for d in dets] == keywords
    scores = infer.detection_scores(dets, truth, tolerance=0.25)
    assert (scores.precision, scores.recall, scores.f1) == (1.0, 1.0, 1.0)
    assert scores.tp == 9 and "precision=1.0" in str(scores)


def test_stream_threshold_and_refractory(tonenet):
    audio, truth = _tone_sentence()
    assert infer.stream(audio, tonenet, sample_rate=SR, threshold=1.01).detections == []
    one = infer.stream(audio, tonenet, sample_rate=SR, refractory_ms=1e6).detections
    assert len(one) == 1 and one[0].word == "low"
    # a 1-s window sees both of two same words 0.3 s apart: with a short gap they merge
    close, truth_c = _tone_sentence(gap_s=(0.3, 0.3))
    merged = infer.stream(close, tonenet, sample_rate=SR).detections
    assert infer.detection_scores(merged, truth_c).recall < 1.0


def test_stream_resamples_and_accepts_paths(tmp_path, tonenet):
    audio, truth = _tone_sentence(seed=3)
    sf.write(tmp_path / "long48k.wav", resample_poly(audio, 3, 1).astype(np.float32), 48000)
    res = infer.stream(tmp_path / "long48k.wav", tonenet)
    assert infer.detection_scores(res.detections, truth).f1 == 1.0


def test_detection_scores_counts():
    truth = [("yes", 1.0, 1.5), ("no", 3.0, 3.4), ("_unknown_", 5.0, 5.5), ("yes", 7.0, 7.5)]
    dets = [
        ("yes", 1.2, 0.9),  # hit
        ("yes", 1.4, 0.8),  # second fire on the same word: false alarm
        ("no", 3.7, 0.9),  # late but within tolerance 0.5: hit
        ("yes", 5.2, 0.7),  # fires on the unknown word: false alarm
    ]  # the 'yes' at 7 s is missed
    s = infer.detection_scores(dets, truth, tolerance=0.5)
    assert (s.tp, s.fp, s.fn) == (2, 2, 1)
    assert s.precision == 0.5 and s.recall == pytest.approx(2 / 3, abs=1e-3)  # rounded to 0.001
    assert s.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3), abs=1e-3)
    assert infer.detection_scores(dets, truth, tolerance=0.1).tp == 1
    assert tuple(infer.detection_scores([], truth))[:3] == (0.0, 0.0, 0.0)


def test_plot_stream_is_labelled(tonenet):
    import matplotlib

    matplotlib.use("Agg")
    audio, truth = _tone_sentence()
    res = infer.stream(audio, tonenet, sample_rate=SR)
    fig = infer.plot_stream(res, CLASSES, truth=truth, threshold=0.6)
    assert fig.axes[0].get_ylabel() and fig.axes[0].get_xlabel() == "time (s)"
    import matplotlib.pyplot as plt

    plt.close("all")


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize(
    "cfg",
    [
        dict(n_fft=400, hop_length=200),
        dict(n_fft=512, win_length=400, hop_length=160),
        dict(n_fft=256, hop_length=128, center=False),
    ],
)
def test_conv_spectrogram_matches_torch_stft(cfg):
    spec = torchaudio.transforms.Spectrogram(**cfg)
    conv = infer._ConvSpectrogram(spec)
    x = 0.3 * torch.randn(3, SR, generator=torch.Generator().manual_seed(0))
    ref, got = spec(x), conv(x)
    assert got.shape == ref.shape
    assert (got - ref).abs().max() <= 1e-4 * ref.abs().max()
    assert conv(x[0]).shape == ref[0].shape  # 1-D input keeps its layout


def test_every_frontend_exports_to_onnx(tmp_path):
    """log-mel, MFCC and the dB spectrogram (with CNNet's adaptive pooling), classic exporter."""
    from audiocourse.models import build_model, model_frontend
    from audiocourse.train import Pipeline

    x = 0.1 * torch.randn(3, SR, generator=torch.Generator().manual_seed(1))
    for name in ("bcresnet", "mfcc1d_plus", "cnnet"):
        pipe = Pipeline(model_frontend(name))
        pipe.fit_normaliser(x)
        module = pipe.infer_module(build_model(name, 12)).eval()
        onnx_file = infer._export(module, tmp_path / f"{name}.onnx", list("abcdefghijkl"), "legacy")
        parity = infer._check_parity(module, x.numpy(), {"onnx": onnx_file})
        assert all(d["logits"] < 1e-3 for d in parity.values()), (name, parity)


def _bcresnet_module() -> tuple[nn.Module, list[str]]:
    from audiocourse.models import build_model
    from audiocourse.train import Pipeline

    torch.manual_seed(0)
    pipe = Pipeline({"kind": "logmel", "n_mels": 40})
    pipe.fit_normaliser(0.1 * torch.randn(16, SR))
    model = build_model("bcresnet", 12, width=1)
    return pipe.infer_module(model).eval(), [f"c{i}" for i in range(12)]


def test_export_parity_onnx(tmp_path, tonenet):
    rng = np.random.default_rng(0)
    clips = np.stack([tone_word(w) for w in FREQS] + [0.1 * rng.standard_normal(SR)] * 2)
    for name, (module, classes) in {"tonenet": tonenet, "bcresnet": _bcresnet_module()}.items():
        out = tmp_path / name
        out.mkdir()
        ox = infer._export(module, out / "m.onnx", classes)
        parity = infer._check_parity(module, clips.astype(np.float32), {"onnx": ox})
        assert set(parity) == {"pytorch conv-STFT", "onnxruntime"}
        for runtime, d in parity.items():
            assert d["logits"] < 1e-3, (name, runtime, d)
            assert d["probs"] < 1e-5, (name, runtime, d)
            assert d["top1_agreement"] == 1.0
        onnx_run = infer._runtimes(module, {"onnx": ox})["onnxruntime"]  # the batch is dynamic
        for b in (1, 5):
            x = np.repeat(clips[:1], b, axis=0).astype(np.float32)
            assert onnx_run(x).shape == (b, len(classes))
        # more clips than one CPU chunk of the log-mel frontend: the graph must not fix chunks
        many = np.resize(clips, (40, SR)).astype(np.float32)
        with torch.inference_mode():
            ref = module(torch.from_numpy(many)).numpy()
        np.testing.assert_allclose(onnx_run(many), ref, atol=1e-3, rtol=1e-3)
        meta = {p.key: p.value for p in __import__("onnx").load(str(ox)).metadata_props}
        assert meta["sample_rate"] == "16000" and eval(meta["classes"]) == classes
    with pytest.raises(ValueError, match="deprecated"):  # TorchScript: gone (torch.export)
        infer.export_model(tonenet, tmp_path / "ts", formats=("torchscript",))


def test_parity_check_detects_a_broken_export(tmp_path, tonenet):
    """A model that differs from the exported one is caught: the parity check can fail."""
    module, classes = tonenet
    ox = infer._export(module, tmp_path / "m.onnx", classes)
    other = ToneNet().eval()
    other.b[1] = 30.0  # 'unknown' wins everywhere
    d = infer._check_parity(other, np.stack([tone_word("mid")]), {"onnx": ox})["onnxruntime"]
    assert d["logits"] > 1 and d["top1_agreement"] == 0.0


def test_export_model_writes_card(tmp_path, tonenet):
    demo = tmp_path / "words"
    demo.mkdir()
    (demo / "README.md").write_text("# SYNTHETIC Speech Commands demo set\n")
    meta = {
        "model_name": "tonenet",
        "classes": CLASSES,
        "feature": {"kind": "logmel", "n_mels": 40},
        "config": {"data": str(demo), "task": "tones"},
        "metrics": {"test_accuracy": 0.875, "n_test": 40, "params": 0},
    }
    clips = np.stack([tone_word(w) for w in FREQS])
    model = (tonenet[0], meta)
    rep = infer.export_model(model, tmp_path / "exp", parity_audio=clips, latency_runs=3)
    assert rep.files["onnx"].is_file() and set(rep.files) == {"onnx"}
    assert set(rep.latency) >= {"pytorch eager", "onnxruntime"}
    assert all(v["median_ms"] > 0 for k, v in rep.latency.items() if k != "machine")
    card = __import__("json").loads(rep.card_json.read_text())
    assert card["model"]["classes"] == CLASSES and card["metrics"]["test_accuracy"] == 0.875
    assert card["training_data"]["synthetic"] is True
    assert any("SYNTHETIC" in x for x in card["known_limits"])
    assert card["features"]["inside_graph"] is True
    assert set(card["parity_max_abs_diff"]) == set(rep.parity)
    md = rep.card_md.read_text()
    assert "87.50 %" in md and "SYNTHETIC" in md and "## Known limits" in md
    assert "Parity" in rep.summary() and "latency" in rep.summary()
    real = tmp_path / "speech_commands_v0.02"
    real.mkdir()
    (real / ".complete").write_text("{}")  # the downloader's marker: not a sign of synthetic data
    card2 = infer._model_card({**meta, "config": {"data": str(real)}, "metrics": {}}, {}, {}, {})
    assert card2["training_data"]["synthetic"] is False
    assert not any("SYNTHETIC" in x for x in card2["known_limits"])
    assert any("unmeasured" in x for x in card2["known_limits"])
    with pytest.raises(ValueError, match="format"):
        infer.export_model(tonenet, tmp_path / "x", formats=["tflite"])


# --------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A real best.pt from the shared training loop (one quick epoch: plumbing, not accuracy)."""
    from audiocourse.models import build_model
    from audiocourse.train import Pipeline, fit

    rng = np.random.default_rng(0)
    words = ["low", "mid", "high"]
    audio = np.stack([tone_word(w, at=rng.uniform(0.1, 0.5)) for w in words for _ in range(8)])
    labels = np.repeat(np.arange(3), 8)
    split = SplitData(
        (audio * 32767).astype(np.int16), labels, words, [""] * 24, ["s"] * 24, "train"
    )
    out = tmp_path_factory.mktemp("ckpt")
    fit(
        build_model("bcresnet", 3, width=0.5),
        split,
        split,
        pipeline=Pipeline(spec_augment=False),
        epochs=1,
        batch_size=8,
        checkpoint_dir=out,
        model_name="bcresnet",
        model_kwargs={"width": 0.5},
        progress=False,
        device="cpu",
    )
    return out / "best.pt"


def test_cli_predict_stream_export(tmp_path, checkpoint, capsys):
    from audiocourse.cli import main

    wav = tmp_path / "clip.wav"
    sf.write(wav, resample_poly(tone_word("mid"), 441, 160), 44100)
    assert main(["predict", str(checkpoint), str(wav), "--top-k", "2"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    top = infer.predict(wav, checkpoint, top_k=2)
    assert line == f"{wav}: " + ", ".join(f"{p.word} {100 * p.prob:.1f}%" for p in top)

    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    assert main(["predict", str(checkpoint), str(bad)]) == 1
    assert "bad.wav" in capsys.readouterr().out

    audio, _ = _tone_sentence()
    long = tmp_path / "long.wav"
    sf.write(long, audio, SR)
    png = tmp_path / "stream.png"
    assert (
        main(["stream", str(checkpoint), str(long), "--threshold", "0.5", "--plot", str(png)]) == 0
    )
    out = capsys.readouterr().out
    assert "windows" in out and png.stat().st_size > 10_000

    exp = tmp_path / "exp"
    assert (
        main(["export", str(checkpoint), "--format", "onnx", "--out", str(exp), "--runs", "2"]) == 0
    )
    out = capsys.readouterr().out
    assert (exp / "model.onnx").is_file() and not (exp / "model.pt").exists()
    assert (exp / "model_card.md").is_file() and "onnxruntime" in out
