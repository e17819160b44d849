"""Tests for audiocourse.features: frontends, augmentation and spectrogram export."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch
import torchaudio

from audiocourse.features import (
    FRONTENDS,
    DbSpectrogram,
    LogMel,
    Mfcc,
    _deltas,
    frontend_config,
    make_frontend,
    mix_noise,
    spec_augment,
    speed_perturb,
    time_shift,
)

SR = 16000


def _speechlike(batch: int = 3, seed: int = 0) -> torch.Tensor:
    """Noisy tones with an envelope: enough structure for spectral checks, no files needed."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(SR) / SR
    f0 = 200 + 600 * torch.rand(batch, 1, generator=g)
    env = torch.exp(-(((t - 0.5) / 0.15) ** 2))
    x = 0.3 * env * torch.sin(2 * math.pi * f0 * t) + 0.01 * torch.randn(batch, SR, generator=g)
    return x.float()


# --------------------------------------------------------------------------- frontends


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"n_fft": 512, "win_length": 400}, {"center": False}, {"n_mels": 64, "hop_length": 128}],
)
def test_logmel_matches_torchaudio_melspectrogram(kwargs):
    # LogMel computes the STFT itself (frames + rfft, chunked on CPU) for speed; it must give
    # torchaudio's numbers, for batches larger than one CPU chunk and for a single clip.
    x = torch.cat([_speechlike(40, seed=1), torch.zeros(1, SR)])
    ours = LogMel(**kwargs)
    cfg = {"n_fft": 480, "hop_length": 160, "n_mels": 40, **kwargs}
    ta = torchaudio.transforms.MelSpectrogram(SR, f_min=20.0, f_max=8000.0, power=2.0, **cfg)
    expected = torch.log(ta(x) + 1e-6)
    torch.testing.assert_close(ours(x), expected, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(ours(x[3]), expected[3], atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(ours(x[:2].unsqueeze(1)), expected[:2].unsqueeze(1), atol=2e-4,
                               rtol=1e-4)  # fmt: skip


def test_logmel_rejects_clips_too_short_to_reflect():
    with pytest.raises(RuntimeError):
        LogMel()(torch.zeros(2, 100))


def test_logmel_shapes_and_layouts():
    x = _speechlike(4)
    m = LogMel()
    assert m(x).shape == (4, 40, 101)
    assert m(x[0]).shape == (40, 101)
    assert m(x.unsqueeze(1)).shape == (4, 1, 40, 101)
    torch.testing.assert_close(m(x.unsqueeze(1))[:, 0], m(x))
    torch.testing.assert_close(m(x[2]), m(x)[2])  # batching does not change a clip's features


def test_logmel_int16_input_is_scaled():
    x = _speechlike(2)
    pcm = torch.round(x * 32767).to(torch.int16)
    m = LogMel()
    torch.testing.assert_close(m(pcm), m(pcm.float() / 32768))


def test_logmel_silence_is_finite_and_equals_log_eps():
    m = LogMel(eps=1e-6)
    out = m(torch.zeros(2, SR))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.full_like(out, math.log(1e-6)))
    with pytest.raises(ValueError):
        LogMel(eps=0.0)


def test_logmel_tone_lands_in_the_right_mel_band():
    m = LogMel()
    t = torch.arange(SR) / SR
    for freq in (300.0, 1000.0, 4000.0):
        out = m(0.5 * torch.sin(2 * math.pi * freq * t))
        band = int(out[:, 20:80].mean(dim=1).argmax())
        # centre frequencies of the HTK mel bands
        mels = torch.linspace(
            2595 * math.log10(1 + 20 / 700), 2595 * math.log10(1 + 8000 / 700), 42
        )
        centres = 700 * (10 ** (mels[1:-1] / 2595) - 1)
        assert abs(int(torch.argmin((centres - freq).abs())) - band) <= 1, (freq, band)


def test_logmel_matches_librosa_with_matching_settings():
    librosa = pytest.importorskip("librosa")
    x = _speechlike(1)[0].numpy()
    ours = LogMel()(torch.from_numpy(x)).numpy()
    ref = librosa.feature.melspectrogram(
        y=x,
        sr=SR,
        n_fft=480,
        hop_length=160,
        n_mels=40,
        fmin=20,
        fmax=8000,
        htk=True,
        norm=None,
        center=True,
        pad_mode="reflect",
        power=2.0,
    )
    ref = np.log(ref + 1e-6)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() < 1e-3


def test_config_roundtrip_and_registry():
    modules = (LogMel(n_mels=64, f_max=7600.0), Mfcc(n_mfcc=20, deltas=1), DbSpectrogram(top_db=80))
    for m in modules:
        config = frontend_config(m)
        assert FRONTENDS[config["kind"]] is type(m)
        again = make_frontend(config)
        x = _speechlike(2)
        torch.testing.assert_close(again(x), m(x))
        assert frontend_config(again) == config
    assert isinstance(make_frontend(None), LogMel)
    assert make_frontend({"kind": "spectrogram"})(_speechlike(2)).shape == (2, 201, 81)
    old = {**frontend_config(LogMel()), "stft": "torch"}  # a checkpoint from before the change
    assert frontend_config(make_frontend(old)) == frontend_config(LogMel())
    with pytest.raises(ValueError, match="logmel"):
        make_frontend({"kind": "wavelets"})


def test_db_spectrogram_is_finite_in_silence_and_clips_top_db():
    x = torch.cat([_speechlike(1), torch.zeros(1, SR)])
    db = DbSpectrogram()(x)
    assert db.shape == (2, 201, 81) and torch.isfinite(db).all()
    assert db[1].max() == pytest.approx(-100.0)  # the 1e-10 floor
    ref = 10 * torch.log10(torchaudio.transforms.Spectrogram(400, hop_length=200)(x[:1]))
    torch.testing.assert_close(db[:1], ref.clamp_min(-100.0), atol=1e-3, rtol=1e-5)
    clipped = DbSpectrogram(top_db=30.0)(x)
    assert (clipped[0].max() - clipped[0].min()).item() == pytest.approx(30.0, abs=1e-3)
    pcm = torch.round(x * 32767).to(torch.int16)
    torch.testing.assert_close(DbSpectrogram()(pcm), DbSpectrogram()(pcm.float() / 32768))


def test_mfcc_is_dct_of_logmel():
    x = _speechlike(2)
    logmel = LogMel()(x).numpy()
    ref = scipy.fft.dct(logmel, type=2, norm="ortho", axis=-2)[:, :13]
    out = Mfcc(n_mfcc=13)(x).numpy()
    assert out.shape == (2, 13, 101)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-3)
    # all 40 coefficients: an orthonormal rotation, so the energy of each frame is preserved
    full = Mfcc(n_mfcc=40)(x)
    torch.testing.assert_close(
        full.pow(2).sum(1), torch.from_numpy(logmel).pow(2).sum(1), rtol=1e-4, atol=1e-2
    )


def test_mfcc_deltas_are_stacked_and_match_torchaudio():
    x = _speechlike(2)
    m = Mfcc(n_mfcc=13, deltas=2)
    out = m(x)
    assert out.shape == (2, 39, 101)
    base = out[:, :13]
    ta_deltas = torchaudio.functional.compute_deltas
    torch.testing.assert_close(out[:, 13:26], ta_deltas(base))
    torch.testing.assert_close(out[:, 26:], ta_deltas(ta_deltas(base)))
    c = torch.randn(3, 5, 30)
    for w in (3, 5, 9):
        torch.testing.assert_close(_deltas(c, w), ta_deltas(c, w), atol=1e-6, rtol=0)
    with pytest.raises(ValueError):
        Mfcc(n_mfcc=41, n_mels=40)


def test_frontend_runs_in_float32_under_autocast():
    x = _speechlike(2)
    m = LogMel()
    ref = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x.bfloat16())
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.2  # only the bf16 input rounding differs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_frontend_and_augmentation_on_cuda_match_cpu():
    x = _speechlike(3)
    m = Mfcc(deltas=2)
    torch.testing.assert_close(m.cuda()(x.cuda()).cpu(), m.cpu()(x), atol=1e-3, rtol=1e-4)
    a = time_shift(x, 1600, generator=torch.Generator().manual_seed(1))
    b = time_shift(x.cuda(), 1600, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b.cpu())


# --------------------------------------------------------------------------- augmentation


def _ramp(batch: int, t: int) -> torch.Tensor:
    return torch.arange(1, t + 1, dtype=torch.float32).repeat(batch, 1)


def test_time_shift_shifts_each_row_with_zero_fill():
    b, t, max_shift = 400, 50, 7
    x = _ramp(b, t)
    out = time_shift(x, max_shift, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    shifts = []
    for row in out:
        nz = torch.nonzero(row).flatten()
        first, last = int(nz[0]), int(nz[-1])
        s = first if row[first] == 1 else -(int(row[first]) - 1)
        # the kept samples are the original ramp, moved by s, everything else is zero
        expected = torch.zeros(t)
        lo, hi = max(0, s), min(t, t + s)
        expected[lo:hi] = x[0, lo - s : hi - s]
        torch.testing.assert_close(row, expected)
        assert last - first + 1 == t - abs(s)
        shifts.append(s)
    shifts = np.array(shifts)
    assert shifts.min() == -max_shift and shifts.max() == max_shift  # full range used
    assert abs(shifts.mean()) < 1.0  # symmetric
    assert len(set(shifts.tolist())) == 2 * max_shift + 1


def test_time_shift_keeps_int16_and_matches_float():
    x = (torch.randn(16, 400) * 3000).to(torch.int16)
    a = time_shift(x, 50, generator=torch.Generator().manual_seed(5))
    b = time_shift(x.float(), 50, generator=torch.Generator().manual_seed(5))
    assert a.dtype == torch.int16
    torch.testing.assert_close(a.float(), b)


def test_time_shift_channels_move_together_and_seed_repeats():
    x = torch.randn(8, 2, 100)
    a = time_shift(x, 20, generator=torch.Generator().manual_seed(3))
    b = time_shift(x, 20, generator=torch.Generator().manual_seed(3))
    c = time_shift(x, 20, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    # both channels zeroed at the same positions
    assert torch.equal(a[:, 0] == 0, a[:, 1] == 0)
    torch.testing.assert_close(time_shift(x, 0), x)
    with pytest.raises(ValueError):
        time_shift(x, -1)


def test_speed_perturb_changes_pitch_by_the_drawn_factor() -> None:
    t = torch.arange(16000) / 16000
    x = torch.sin(2 * torch.pi * 440 * t).repeat(4, 1)
    torch.testing.assert_close(speed_perturb(x, 0.0), x)
    torch.testing.assert_close(speed_perturb(x, 1e-9), x, atol=1e-5, rtol=0)
    y = speed_perturb(x, 0.1, generator=torch.Generator().manual_seed(3))
    u = torch.rand(4, generator=torch.Generator().manual_seed(3))
    rate = 1 + 0.01 * ((u * 21).floor().clamp_max(20) - 10)  # uniform on the 0.01 grid
    peak = torch.fft.rfft(y).abs().argmax(dim=1).float()  # 1 Hz per bin for 1 s
    torch.testing.assert_close(peak, (440 * rate).round(), atol=2.0, rtol=0)
    assert (rate - 1).abs().max() > 0.02  # the draws really differ from 1
    # faster clips are shorter (zeros at both ends), slower ones are cropped about the centre
    ones = torch.ones(400, 1000)
    z = speed_perturb(ones, 0.1, generator=torch.Generator().manual_seed(0))
    zeros = (z == 0).sum(dim=1)
    assert zeros.max() >= 85 and (zeros == 0).sum() > 100  # 1000 - 1000/1.1 = 91 at most
    torch.testing.assert_close(z[:, 450:550], torch.ones(400, 100))
    lead = (z.cumsum(dim=1) == 0).sum(dim=1)  # zeros before the first non-zero sample
    trail = (z.flip(1).cumsum(dim=1) == 0).sum(dim=1)
    assert (lead - trail).abs().max() <= 1  # padded symmetrically: the clip stays centred


def test_mix_noise_probability_and_gain():
    b, t = 2000, 64
    x = torch.zeros(b, t)
    noise = torch.ones(3, t)  # constant noise: the added value per row *is* the gain
    out = mix_noise(x, noise, prob=0.8, max_gain=0.1, generator=torch.Generator().manual_seed(0))
    gains = out[:, 0]
    assert torch.allclose(out, gains.unsqueeze(1).expand_as(out))  # one gain per example
    applied = gains > 0
    assert 0.76 < applied.float().mean() < 0.84
    assert gains.max() <= 0.1 and gains.min() >= 0
    assert abs(gains[applied].mean().item() - 0.05) < 0.005  # uniform on [0, 0.1]
    torch.testing.assert_close(mix_noise(x, noise, prob=0.0), x)


def test_mix_noise_takes_contiguous_slices_of_bank_rows():
    b, t, tn = 300, 10, 40
    bank = torch.stack([torch.arange(tn, dtype=torch.float32) + 1 + 100 * k for k in range(4)])
    out = mix_noise(
        torch.zeros(b, t), bank, prob=1.0, max_gain=1.0, clamp=False,
        generator=torch.Generator().manual_seed(1),
    )  # fmt: skip
    rows, offsets = set(), set()
    for row in out:
        scaled = row * (t - 1) / (row[-1] - row[0])  # undo the gain: the ramp has unit steps
        k = int(torch.round((scaled[0] - 20) / 100))
        off = int(torch.round(scaled[0] - 100 * k - 1))
        torch.testing.assert_close(scaled, bank[k, off : off + t], atol=1e-2, rtol=1e-4)
        rows.add(k)
        offsets.add(off)
    assert rows == {0, 1, 2, 3}
    assert min(offsets) == 0 and max(offsets) == tn - t


def test_mix_noise_snr_is_respected():
    x = _speechlike(200, seed=2)
    noise = torch.randn(5, 3 * SR)
    out = mix_noise(
        x, noise, prob=1.0, snr_db=(5.0, 15.0), clamp=False,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    added = out - x
    snr = 10 * torch.log10(x.pow(2).mean(1) / added.pow(2).mean(1))
    assert snr.min() >= 5.0 - 1e-3 and snr.max() <= 15.0 + 1e-3
    assert snr.max() - snr.min() > 8.0  # spread across the range
    # silence stays silent (undefined SNR), and the result stays finite
    out0 = mix_noise(torch.zeros(4, SR), noise, prob=1.0, snr_db=(5.0, 15.0))
    assert torch.isfinite(out0).all() and out0.abs().max() == 0


def test_mix_noise_accepts_int16_bank_clamps_and_validates():
    x = torch.full((4, 100), 0.99)
    bank = torch.full((2, 100), 16384, dtype=torch.int16)  # 0.5 as float
    out = mix_noise(x, bank, prob=1.0, max_gain=1.0, generator=torch.Generator().manual_seed(5))
    assert out.max() <= 1.0
    pcm = torch.full((3, 100), 8192, dtype=torch.int16)  # int16 clips are scaled first: 0.25
    torch.testing.assert_close(mix_noise(pcm, bank, prob=0.0), torch.full((3, 100), 0.25))
    with pytest.raises(ValueError, match="shorter"):
        mix_noise(torch.zeros(2, 200), torch.zeros(3, 100))
    with pytest.raises(ValueError):
        mix_noise(torch.zeros(2, 100), torch.zeros(100))


def test_spec_augment_masks_bands_per_example():
    b, f, t = 500, 40, 101
    spec = torch.randn(b, f, t) + 5.0
    out = spec_augment(
        spec, freq_masks=2, freq_width=8, time_masks=2, time_width=10, mask_value=-100.0,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    masked = out == -100.0
    full_rows = masked.all(dim=2)  # (B, F): frequency rows masked across all time
    full_cols = masked.all(dim=1)  # (B, T)
    assert full_rows.sum(1).max() <= 16 and full_cols.sum(1).max() <= 20
    # every masked cell lies in a masked row or a masked column
    assert torch.equal(masked, full_rows.unsqueeze(2) | full_cols.unsqueeze(1))
    # untouched cells are unchanged
    assert torch.equal(out[~masked], spec[~masked])
    # examples get different masks; on average about 2 * 4 rows and 2 * 5 frames
    assert len({tuple(r.nonzero().flatten().tolist()) for r in full_rows}) > 50
    assert 5.0 < full_rows.sum(1).float().mean() < 9.0
    assert 7.0 < full_cols.sum(1).float().mean() < 11.0


def test_spec_augment_mean_fill_channels_and_seed():
    spec = torch.randn(6, 2, 40, 101) * 3 + 2
    g = torch.Generator().manual_seed(9)
    a = spec_augment(spec, generator=g)
    b = spec_augment(spec, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(a, b)
    changed = a != spec
    assert torch.equal(changed[:, 0], changed[:, 1])  # channels share masks
    means = spec.reshape(6, -1).mean(1)
    for i in range(6):
        vals = a[i][changed[i]]
        if vals.numel():
            torch.testing.assert_close(vals, means[i].expand_as(vals))
    torch.testing.assert_close(spec_augment(spec, freq_masks=0, time_masks=0), spec)
    with pytest.raises(ValueError):
        spec_augment(torch.zeros(40, 101))


# --------------------------------------------------------------------------- batched features


def test_batch_and_loop_logmel_agree_on_a_readonly_memmap(tmp_path):
    from audiocourse.features import batch_logmel, loop_logmel

    pcm = (np.random.default_rng(0).standard_normal((7, SR)) * 2000).astype(np.int16)
    np.save(tmp_path / "a.npy", pcm)
    mm = np.load(tmp_path / "a.npy", mmap_mode="r")
    ref = LogMel()(torch.from_numpy(pcm))
    b = batch_logmel(mm, batch_size=3)
    loop = loop_logmel(mm)
    assert b.shape == (7, 40, 101) and b.device.type == "cpu"
    torch.testing.assert_close(b, ref)
    torch.testing.assert_close(loop, ref, atol=1e-4, rtol=1e-5)
    mf = batch_logmel(mm, frontend=Mfcc(deltas=1), batch_size=4)
    assert mf.shape == (7, 26, 101)


def test_compare_with_librosa_small_when_matched_large_when_defaults_differ():
    pytest.importorskip("librosa")
    from audiocourse.features import compare_with_librosa

    x = _speechlike(1)[0].numpy()
    same = compare_with_librosa(x)
    assert same["max_abs_log"] < 1e-3 and same["max_rel_power"] < 1e-4
    slaney = compare_with_librosa(x, librosa_kwargs={"htk": False, "norm": "slaney"})
    assert slaney["max_abs_db"] > 10 * same["max_abs_db"] + 1.0
    padded = compare_with_librosa(x, librosa_kwargs={"pad_mode": "constant"})
    assert padded["max_abs_db"] > same["max_abs_db"]


# --------------------------------------------------------------------------- PNG export


def _export_inputs():
    t = torch.arange(SR) / SR
    loud = 0.5 * torch.sin(2 * math.pi * 1000 * t)
    rows = torch.stack([loud, loud / 2, torch.zeros(SR), 0.3 * torch.sin(2 * math.pi * 300 * t)])
    pcm = torch.round(rows * 32767).to(torch.int16).numpy()
    labels = np.array([0, 0, 1, 1])
    paths = ["/x/yes/abcd1234_nohash_0.wav", "/x/yes/abcd1234_nohash_1.wav", "<silence>", ""]
    return pcm, labels, ["yes", "_silence_"], paths


def test_export_spectrogram_pngs_fixed_range_and_names(tmp_path):
    from PIL import Image

    from audiocourse.features import export_spectrogram_pngs

    pcm, labels, classes, paths = _export_inputs()
    res = export_spectrogram_pngs(
        pcm, labels, classes, tmp_path / "png", paths=paths, batch_size=3, top_db=80.0
    )
    assert res["n"] == 4 and res["shape"] == (201, 81)
    lo, hi = res["db_range"]
    assert hi - lo == pytest.approx(80.0)
    files = sorted((tmp_path / "png").rglob("*.png"))
    assert [f.relative_to(tmp_path / "png").as_posix() for f in files] == [
        "_silence_/000002_generated.png",
        "_silence_/000003_generated.png",
        "yes/000000_abcd1234_nohash_0.png",
        "yes/000001_abcd1234_nohash_1.png",
    ]
    imgs = {f.name: np.asarray(Image.open(f)) for f in files}
    for img in imgs.values():
        assert img.dtype == np.uint8 and img.shape == (201, 81)
    loud, quiet = imgs["000000_abcd1234_nohash_0.png"], imgs["000001_abcd1234_nohash_1.png"]
    assert loud.max() == 255  # the loudest bin of all clips sets the top of the range
    assert (imgs["000002_generated.png"] == 0).all()  # silence: black, not NaN
    # half the amplitude = -6.02 dB = 6.02 * 255 / 80 grey levels darker at the tone's bin
    row = 200 - 1000 * 400 // 16000  # row 0 is the highest frequency
    shift = loud[row, 5:-5].astype(float) - quiet[row, 5:-5].astype(float)
    assert abs(shift.mean() - 6.02 * 255 / 80) < 1.0
    # the 300 Hz tone lights up a low row, near the bottom of the image
    assert int(np.argmax(imgs["000003_generated.png"][:, 40])) == 200 - round(300 * 400 / 16000)
    manifest = (tmp_path / "png" / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "file,label,class,source" and len(manifest) == 5
    assert "yes/000000_abcd1234_nohash_0.png,0,yes,/x/yes/abcd1234_nohash_0.wav" in manifest
    # a second split exported with the first one's range gets the same mapping
    again = export_spectrogram_pngs(
        pcm[:1], labels[:1], classes, tmp_path / "png2", db_range=res["db_range"]
    )
    img2 = np.asarray(Image.open(tmp_path / "png2" / "yes" / "000000_generated.png"))
    assert np.array_equal(img2, loud) and again["db_range"] == res["db_range"]


def test_export_logmel_kind_and_matplotlib_version_agree(tmp_path):
    import matplotlib.pyplot as plt
    from PIL import Image

    from audiocourse.features import export_spectrogram_pngs, export_spectrogram_pngs_matplotlib

    pcm, labels, classes, paths = _export_inputs()
    fast = export_spectrogram_pngs(pcm, labels, classes, tmp_path / "a", paths=paths, kind="logmel")
    assert fast["shape"] == (40, 101)
    before = plt.get_fignums()
    slow = export_spectrogram_pngs_matplotlib(
        pcm, labels, classes, tmp_path / "b", paths=paths, kind="logmel", db_range=fast["db_range"]
    )
    assert plt.get_fignums() == before  # every figure closed
    assert slow["shape"] == (40, 101)
    for f in sorted((tmp_path / "a").rglob("*.png")):
        a = np.asarray(Image.open(f)).astype(int)
        b = np.asarray(Image.open(tmp_path / "b" / f.relative_to(tmp_path / "a")).convert("L"))
        assert b.shape == a.shape
        assert np.abs(a - b.astype(int)).max() <= 2  # only colormap rounding differs
    with pytest.raises(ValueError):
        export_spectrogram_pngs(pcm, labels[:2], classes, tmp_path / "c")


# --------------------------------------------------------------------------- plots


def test_plots_label_axes_use_origin_lower_and_leave_no_global_state(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from audiocourse import plots
    from audiocourse.features import export_spectrogram_pngs

    rc_before = dict(matplotlib.rcParams)
    figs_before = set(plt.get_fignums())
    x = _speechlike(1)[0]
    axes = [
        plots.plot_waveform(x, title="w"),
        plots.plot_waveform(np.stack([x.numpy(), -x.numpy()])),
        plots.plot_sampling(10_000, 16_000),
        plots.plot_spectrum(x),
        plots.plot_spectrogram(10 * LogMel().power_mel(x).clamp_min(1e-10).log10(), y_axis="mel"),
        plots.plot_spectrogram(Mfcc()(x), y_axis="mfcc", cbar_label="value"),
        plots.plot_mel_filterbank(),
    ]
    spec = plots.plot_spectrogram(
        10 * torch.rand(241, 101).clamp_min(1e-10).log10(), hop_length=160
    )
    axes.append(spec)
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel(), ax.get_title()
    # time axis in seconds, frequency axis up to Nyquist, low frequencies at the bottom
    assert spec.get_xlim()[1] == pytest.approx(100.5 * 0.01)
    assert spec.get_ylim() == pytest.approx((-1000 / 30 / 2, 8000 + 1000 / 30 / 2))
    assert spec.images[0].origin == "lower"
    assert len(spec.figure.axes) == 2  # the image and its colour bar
    assert "dB" in spec.figure.axes[1].get_ylabel()
    fig = plots.plot_feature_trio(x.numpy(), title="trio")
    assert len(fig.axes) == 4 + 3  # four panels, three colour bars
    assert all(im.origin == "lower" for ax in fig.axes for im in ax.images)
    pcm = (x.numpy() * 32767).astype(np.int16)[None].repeat(3, 0)
    export_spectrogram_pngs(pcm, np.zeros(3, int), ["a"], tmp_path)
    grid = plots.plot_png_grid(sorted(tmp_path.rglob("*.png")), ncols=2)
    assert all(im.origin == "lower" for ax in grid.axes for im in ax.images)
    assert dict(matplotlib.rcParams) == rc_before
    plt.close("all")
    assert set(plt.get_fignums()) <= figs_before


def test_mel_band_centres_match_torchaudio_filter_peaks():
    from audiocourse.plots import _mel_band_centres as mel_band_centres

    fb = torchaudio.functional.melscale_fbanks(2049, 20.0, 8000.0, 40, SR, mel_scale="htk")
    peaks = fb.argmax(0).numpy() * (SR / 2) / 2048
    np.testing.assert_allclose(mel_band_centres(40, 20.0, 8000.0), peaks, atol=4.0)
