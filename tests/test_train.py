"""The training loop, its pipeline, metrics, checkpoints, the CLI and BC-ResNet (train.py etc.)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audiocourse import cli
from audiocourse import train as T
from audiocourse.bcresnet import BCResNet, PointwiseConv2d
from audiocourse.features import make_frontend
from audiocourse.models import build_model, model_frontend

FREQS = (300.0, 900.0, 2500.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a shared 2-core machine, OpenMP's spinning threads are 10-50x
    slower than one thread when the other core is busy. Restored after this module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tone_split(n: int, seed: int, n_classes: int = 3) -> SimpleNamespace:
    """A SplitData look-alike: class k is a tone at FREQS[k] (random phase, level, noise)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    rng.shuffle(y)
    t = np.arange(16000) / 16000
    f = np.asarray(FREQS)[y][:, None]
    amp = rng.uniform(0.1, 0.4, (n, 1))
    x = amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 6, (n, 1)))
    x = x + 0.02 * rng.standard_normal((n, 16000))
    return SimpleNamespace(
        audio=(x * 32767).astype(np.int16),
        labels=y.astype(np.int64),
        classes=["low", "mid", "high"][:n_classes],
        paths=[f"clip{i}.wav" for i in range(n)],
    )


class TinyCnn(nn.Module):
    """A small, fast CNN on (B, F, T) features for loop-mechanics tests."""

    def __init__(self, n_classes: int = 3, n_features: int = 40) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * n_features, n_classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x.unsqueeze(1))))
        return self.fc(x.mean(dim=3).flatten(1))  # average over time, keep frequency


# ---------------------------------------------------------------------------------- fit


def test_fit_learns_a_learnable_task_through_the_pipeline() -> None:
    torch.manual_seed(0)
    train, val = tone_split(120, 0), tone_split(45, 1)
    noise = np.random.default_rng(3).standard_normal((4, 16000)).astype(np.float32) * 0.05
    pipe = T.Pipeline({"kind": "logmel", "n_mels": 40}, noise=noise)
    model = TinyCnn()
    hist = T.fit(model, train, val, pipeline=pipe, epochs=3, lr=2e-2, batch_size=20,
                 device="cpu", progress=False)
    assert len(hist) == 3 and hist["epoch"] == [1, 2, 3]
    assert hist[-1]["train_loss"] < 0.6 * hist[0]["train_loss"], hist["train_loss"]
    assert max(hist["val_acc"]) >= 0.9, hist["val_acc"]
    assert hist.best_epoch == int(np.argmax(hist["val_acc"])) + 1
    assert all(r["samples_per_s"] > 0 and r["seconds"] > 0 for r in hist)
    # restore_best: the model holds the best epoch's weights
    res = T.evaluate(model, val, pipe)
    assert res.accuracy == pytest.approx(max(hist["val_acc"]))


def test_fit_accepts_tensor_pairs_and_iterables() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(96) % 2
    x = torch.randn(96, 10, 20, generator=g) + 2.0 * y.view(-1, 1, 1)  # separable features
    model = TinyCnn(2, 10)
    hist = T.fit(model, (x, y), (x, y), epochs=3, lr=3e-2, batch_size=16, device="cpu",
                 progress=False)
    assert hist[-1]["val_acc"] > 0.9
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    hist2 = T.fit(TinyCnn(2, 10), loader, loader, epochs=2, lr=3e-2, device="cpu", progress=False)
    assert len(hist2) == 2 and hist2[-1]["val_acc"] is not None


def test_fit_without_validation_keeps_history() -> None:
    x, y = torch.randn(40, 10, 20), torch.arange(40) % 2
    hist = T.fit(TinyCnn(2, 10), (x, y), epochs=2, batch_size=8, device="cpu", progress=False)
    assert hist["val_acc"] == [None, None] and hist.best_epoch is None


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_metrics_on_a_hand_made_case() -> None:
    # The "model" is the identity: inputs are logits, so the predictions are chosen by hand.
    truth = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    pred = [0, 0, 1, 1, 2, 2, 2, 2, 0, 0]
    logits = F.one_hot(torch.tensor(pred), 3).float() * 5
    res = T.evaluate(nn.Identity(), (logits, torch.tensor(truth)), classes=["a", "b", "c"],
                     device="cpu")
    assert res.accuracy == pytest.approx(6 / 10)
    np.testing.assert_array_equal(res.confusion, [[2, 1, 0], [0, 1, 1], [2, 0, 3]])
    np.testing.assert_allclose(res.recall, [2 / 3, 1 / 2, 3 / 5])
    np.testing.assert_allclose(res.precision, [2 / 4, 1 / 2, 3 / 4])
    f1_c = 2 * 0.75 * 0.6 / (0.75 + 0.6)
    np.testing.assert_allclose(res.f1, [2 * 0.5 * (2 / 3) / (0.5 + 2 / 3), 0.5, f1_c])
    np.testing.assert_array_equal(res.support, [3, 2, 5])
    assert res.most_confused(2) == [("c", "a", 2), ("a", "b", 1)]
    assert res.most_confused(10)[0] == ("c", "a", 2) and len(res.most_confused(10)) == 3
    wrong = res.misclassified()
    assert sorted(wrong.tolist()) == [2, 4, 8, 9]
    expected_loss = F.cross_entropy(logits, torch.tensor(truth)).item()
    assert res.loss == pytest.approx(expected_loss)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["per_class"]["c"]["recall"] == pytest.approx(0.6) and d["confusion"][2] == [2, 0, 3]
    assert "60.00 %" in res.report() and "c -> a (2)" in res.report()


def test_a_class_never_predicted_has_zero_precision_not_nan() -> None:
    logits = F.one_hot(torch.tensor([0, 0, 0]), 2).float()
    res = T.evaluate(nn.Identity(), (logits, torch.tensor([0, 1, 1])), device="cpu")
    assert res.precision[1] == 0 and res.recall[1] == 0 and res.f1[1] == 0
    assert not np.isnan(res.f1).any()


# ------------------------------------------------------------------- checkpoints, load_model


def _train_small_bcresnet(tmp_path: Path, epochs: int = 1):
    torch.manual_seed(0)
    train, val = tone_split(64, 0), tone_split(24, 1)
    model = BCResNet(3, width=0.25)
    pipe = T.Pipeline(model_frontend("bcresnet"))
    hist = T.fit(model, train, val, pipeline=pipe, epochs=epochs, lr=1e-2, batch_size=16,
                 device="cpu", checkpoint_dir=tmp_path / "ck", progress=False,
                 model_name="bcresnet", model_kwargs={"width": 0.25})
    return model, pipe, hist, val


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model, pipe, hist, _ = _train_small_bcresnet(tmp_path, epochs=2)
    last = T.load_checkpoint(tmp_path / "ck" / "last.pt")  # weights_only: plain data + tensors
    for key in ("model_name", "model_kwargs", "classes", "feature", "pipeline", "state_dict",
                "epoch", "history", "metrics", "config", "train_state"):
        assert key in last, key
    assert last["epoch"] == 2 and last["model_name"] == "bcresnet"
    assert last["classes"] == ["low", "mid", "high"] and last["feature"]["kind"] == "logmel"
    assert [r["epoch"] for r in last["history"]] == [1, 2]
    assert set(last["train_state"]) == {"optimizer", "scaler", "rng"}
    best = T.load_checkpoint(tmp_path / "ck" / "best.pt")
    assert best["epoch"] == hist.best_epoch == best["metrics"]["best_epoch"]
    assert best["metrics"]["best_val_acc"] == pytest.approx(max(hist["val_acc"]))
    assert "train_state" not in best
    # the model (best weights restored) equals best.pt's weights
    for k, v in model.state_dict().items():
        assert torch.equal(v, best["state_dict"][k]), k
    torch.testing.assert_close(best["pipeline"]["mean"], pipe.normaliser.mean)
    assert not list((tmp_path / "ck").glob(".*tmp*")), "temporary files left behind"


def test_fit_records_validation_and_record_test_adds_test_figures(tmp_path: Path) -> None:
    """Every training path leaves its figures in best.pt, where notebook 06 reads them."""
    model, pipe, hist, val = _train_small_bcresnet(tmp_path)
    _, meta = T.load_model(tmp_path / "ck" / "best.pt", "cpu")
    assert meta["metrics"]["best_val_acc"] == pytest.approx(max(hist["val_acc"]))
    result = T.evaluate(model, val, pipe)
    T.record_test(tmp_path / "ck", result, task="toy")
    _, meta = T.load_model(tmp_path / "ck" / "best.pt", "cpu")
    assert meta["metrics"]["test_accuracy"] == result.accuracy and meta["metrics"]["task"] == "toy"
    assert meta["metrics"]["n_test"] == 24 and meta["metrics"]["best_epoch"] == hist.best_epoch


def test_resume_with_more_epochs_replans_the_schedule(tmp_path: Path) -> None:
    """Regression: the extra epochs of a longer resumed run used to train at learning rate 0."""
    _, _, hist, _ = _train_small_bcresnet(tmp_path, epochs=2)
    assert hist[-1]["lr"] < 0.05 * 1e-2  # the 2-epoch cosine ends near 0
    hist4 = T.fit(BCResNet(3, width=0.25), tone_split(64, 0), tone_split(24, 1),
                  pipeline=T.Pipeline(model_frontend("bcresnet")), epochs=4, lr=1e-2,
                  batch_size=16, device="cpu", checkpoint_dir=tmp_path / "ck", progress=False,
                  model_name="bcresnet", model_kwargs={"width": 0.25})
    assert [r["epoch"] for r in hist4] == [1, 2, 3, 4]
    assert hist4[2]["lr"] > 0.1 * 1e-2, [r["lr"] for r in hist4]  # re-planned: not 0
    assert hist4[3]["lr"] < hist4[2]["lr"]


def test_resume_refuses_changed_hyper_parameters(tmp_path: Path) -> None:
    _train_small_bcresnet(tmp_path)
    with pytest.raises(ValueError, match="other settings.*lr"):
        T.fit(BCResNet(3, width=0.25), tone_split(64, 0), tone_split(24, 1), epochs=2, lr=5e-2,
              batch_size=16, device="cpu", checkpoint_dir=tmp_path / "ck", progress=False,
              model_name="bcresnet", model_kwargs={"width": 0.25})


def test_load_model_maps_waveforms_to_logits(tmp_path: Path) -> None:
    model, pipe, _, val = _train_small_bcresnet(tmp_path)
    infer, meta = T.load_model(tmp_path / "ck" / "best.pt", "cpu")
    assert meta["classes"] == ["low", "mid", "high"] and "state_dict" not in meta
    assert not infer.training
    wave = torch.from_numpy(val.audio[:5].astype(np.float32) / 32768)
    with torch.no_grad():
        logits = infer(wave)
        expected = model(pipe(wave))  # the training pipeline's eval path + the trained model
    assert logits.shape == (5, 3)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # int16 in, same answer
        torch.testing.assert_close(infer(torch.from_numpy(val.audio[:5])), logits)
    a = T.evaluate(infer, val)  # the inference module evaluates raw int16 splits directly
    b = T.evaluate(model, val, pipe)
    np.testing.assert_array_equal(a.predictions, b.predictions)


def test_resume_refuses_a_different_model(tmp_path: Path) -> None:
    _train_small_bcresnet(tmp_path)
    with pytest.raises(ValueError, match="model_name 'bcresnet', not 'cnnet'"):
        T.fit(build_model("cnnet", 3), tone_split(32, 0), epochs=1, batch_size=16, device="cpu",
              checkpoint_dir=tmp_path / "ck", progress=False, model_name="cnnet")


def test_resume_of_a_finished_run_trains_nothing(tmp_path: Path) -> None:
    model, pipe, hist, _ = _train_small_bcresnet(tmp_path)
    before = T.load_checkpoint(tmp_path / "ck" / "last.pt")
    again = BCResNet(3, width=0.25)
    hist2 = T.fit(again, tone_split(64, 0), tone_split(24, 1), pipeline=pipe,
                  epochs=1, lr=1e-2, batch_size=16, device="cpu", checkpoint_dir=tmp_path / "ck",
                  progress=False, model_name="bcresnet", model_kwargs={"width": 0.25})
    assert hist2["val_acc"] == hist["val_acc"]
    after = T.load_checkpoint(tmp_path / "ck" / "last.pt")
    assert after["history"] == before["history"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])


# -------------------------------------------------------------------------------- pipeline


def test_pipeline_runs_on_cpu_with_and_without_augmentation() -> None:
    data = tone_split(48, 0)
    x = torch.from_numpy(data.audio)
    noise = torch.randn(3, 20000) * 0.1
    pipe = T.Pipeline(noise=noise, silence_label=2).fit_normaliser(x)
    clean = pipe(x)
    assert clean.shape == (48, 40, 101) and clean.dtype == torch.float32
    # normalised with training statistics: each mel band ~ zero mean, unit variance
    torch.testing.assert_close(clean.mean(dim=(0, 2)), torch.zeros(40), atol=1e-3, rtol=0)
    torch.testing.assert_close(clean.std(dim=(0, 2)), torch.ones(40), atol=1e-2, rtol=0)
    torch.testing.assert_close(pipe(x), clean)  # evaluation is deterministic
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = pipe(x, torch.from_numpy(data.labels), train=True, generator=g1)
    b = pipe(x, torch.from_numpy(data.labels), train=True, generator=g2)
    torch.testing.assert_close(a, b)  # the same generator state, the same augmentation
    assert a.shape == clean.shape and not torch.allclose(a, clean)
    assert torch.isfinite(a).all()
    # SpecAugment masks land on the training mean (0 after normalisation)
    assert (a == 0).any() and not (clean == 0).any()


def test_pipeline_augmentation_pieces() -> None:
    x = torch.zeros(8, 16000, dtype=torch.int16)
    labels = torch.tensor([0, 1, 1, 1, 1, 1, 1, 1])
    noise = torch.randn(2, 16000, generator=torch.Generator().manual_seed(0)) * 0.3
    pipe = T.Pipeline(noise=noise, noise_prob=0.0, silence_label=0, silence_gain=1.0,
                      spec_augment=False, time_shift_ms=0)  # unfitted normaliser: identity
    # only the silence row gets noise (noise_prob 0 for the rest)
    quiet = pipe.frontend(torch.zeros(1, 16000)).mean()
    out = pipe(x, labels, train=True, generator=torch.Generator().manual_seed(0))
    assert out[1:].mean() == pytest.approx(float(quiet), abs=1e-4)
    # a silence row gets noise unless its random gain happens to be ~0
    pipe2 = T.Pipeline(noise=noise, noise_prob=1.0, noise_gain=0.5, spec_augment=False,
                       time_shift_ms=0)
    out2 = pipe2(x, labels, train=True, generator=torch.Generator().manual_seed(0))
    assert (out2.mean(dim=(1, 2)) > quiet + 1).sum() >= 6


def test_pipeline_state_round_trip() -> None:
    x = torch.from_numpy(tone_split(16, 0).audio)
    pipe = T.Pipeline({"kind": "mfcc", "n_mfcc": 13, "deltas": 2}).fit_normaliser(x)
    again = T.Pipeline.from_state(pipe.state())
    torch.testing.assert_close(again(x), pipe(x))
    assert again(x).shape == (16, 39, 101)
    assert again.augment == pipe.augment


def test_per_clip_normalisation_ignores_loudness_and_survives_a_checkpoint() -> None:
    x = torch.from_numpy(tone_split(16, 0).audio).float() / 32768
    pipe = T.Pipeline(normalise="clip").fit_normaliser(x)  # nothing to fit
    assert pipe.normaliser.mean.dim() == 0
    f = pipe(x)
    torch.testing.assert_close(f.mean(dim=(1, 2)), torch.zeros(16), atol=1e-4, rtol=0)
    torch.testing.assert_close(f.std(dim=(1, 2)), torch.ones(16), atol=1e-4, rtol=0)
    # 12 dB quieter: every log-mel cell above the floor moves by the same amount, which the
    # per-clip mean takes out; the per-band normaliser of the training split keeps the shift.
    quiet = pipe(x / 4)
    assert (quiet - f).abs().median() < 0.01
    band = T.Pipeline().fit_normaliser(x)
    assert (band(x / 4) - band(x)).abs().median() > 0.1
    again = T.Pipeline.from_state(pipe.state())
    assert again.normalise == "clip"
    torch.testing.assert_close(again(x), f)
    with pytest.raises(ValueError, match="normalise"):
        T.Pipeline(normalise="global")


def test_infer_module_is_a_sequential_of_frontend_normaliser_model() -> None:
    pipe = T.Pipeline().fit_normaliser(torch.from_numpy(tone_split(16, 0).audio))
    model = TinyCnn().eval()
    infer = pipe.infer_module(model)
    assert list(dict(infer.named_children())) == ["frontend", "normaliser", "model"]
    w = torch.randn(2, 16000) * 0.1
    torch.testing.assert_close(infer(w), model(pipe(w)))


# ------------------------------------------------------------------------ helpers, frontends


def test_make_frontend_kinds() -> None:
    x = torch.zeros(2, 16000)
    assert make_frontend({"kind": "logmel"})(x).shape == (2, 40, 101)
    assert make_frontend({"kind": "mfcc", "n_mfcc": 13})(x).shape == (2, 13, 101)
    spec = make_frontend({"kind": "spectrogram"})(x)  # Microsoft Learn's 201 x 81 input
    assert spec.shape == (2, 201, 81)
    assert torch.isfinite(spec).all() and spec.min() == pytest.approx(-100.0)  # the dB floor
    with pytest.raises(ValueError, match="unknown feature kind"):
        make_frontend({"kind": "wavelets"})


def test_lr_schedule_warmup_then_cosine() -> None:
    f = T._lr_factor
    assert f(0, 100, 10, "cosine") == pytest.approx(0.1) and f(9, 100, 10, "cosine") == 1.0
    assert f(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert f(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert f(100, 100, 10, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert f(50, 100, 0, "constant") == 1.0


def test_amp_dtype_and_optimizers() -> None:
    assert T.amp_dtype(torch.device("cpu")) is None
    assert T.amp_dtype(torch.device("cuda"), amp=False) is None
    m = TinyCnn()
    for name in ("adamw", "adam"):
        opt = T._make_optimizer(m, name, 1e-3, 1e-2)
        decayed = {id(p) for p in opt.param_groups[0]["params"]}
        assert id(m.conv.weight) in decayed and id(m.conv.bias) not in decayed
    sgd = T._make_optimizer(m, "sgd", 1e-3, 1e-2)  # the authors': decay on every parameter
    assert len(sgd.param_groups) == 1 and not sgd.param_groups[0]["nesterov"]
    with pytest.raises(ValueError):
        T._make_optimizer(m, "lbfgs", 1e-3, 0)


def test_count_parameters_and_summary() -> None:
    m = TinyCnn()
    assert T.count_parameters(m) == 4 * 9 + 4 + 2 * 4 + 4 * 40 * 3 + 3
    text = str(T.model_summary(m, (1, 40, 101)))
    assert "Total params" in text


def test_plots_have_labels() -> None:
    import matplotlib

    matplotlib.use("Agg")
    hist = T.History([
        {"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "val_loss": 1.1, "val_acc": 0.4},
        {"epoch": 2, "train_loss": 0.5, "train_acc": 0.8, "val_loss": 0.7, "val_acc": 0.7},
    ])
    fig = T.plot_history(hist)
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)
    res = T.evaluate(nn.Identity(), (torch.eye(2)[[0, 0, 1, 1]], torch.tensor([0, 1, 1, 1])))
    fig2 = T.plot_confusion(res)
    ax = fig2.axes[0]
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class"
    assert len(fig2.axes) == 2  # the colour bar


# ------------------------------------------------------------------------------- BC-ResNet


@pytest.mark.parametrize("width,paper", [(1, 9_200), (3, 54_000), (8, 321_000)])
def test_bcresnet_parameter_counts_match_the_paper(width: int, paper: int) -> None:
    n = T.count_parameters(BCResNet(12, width=width, n_mels=40))
    assert abs(n - paper) / paper < 0.03, n


def test_bcresnet_shapes_and_checks() -> None:
    m = BCResNet(35, width=1).eval()
    assert m(torch.randn(2, 40, 101)).shape == (2, 35)
    assert m(torch.randn(2, 1, 40, 98)).shape == (2, 35)  # any clip length
    with pytest.raises(ValueError, match="log-mels"):
        m(torch.randn(2, 32, 101))
    with pytest.raises(ValueError):
        BCResNet(12, n_mels=36)


def test_pointwise_conv_equals_conv2d() -> None:
    pw = PointwiseConv2d(6, 4, bias=True)
    x = torch.randn(3, 6, 5, 7)
    torch.testing.assert_close(pw(x), F.conv2d(x, pw.weight, pw.bias), rtol=1e-5, atol=1e-5)


def test_bcresnet_is_registered() -> None:
    m = build_model("bcresnet", 12, width=1)
    assert isinstance(m, BCResNet) and T.count_parameters(m) == T.count_parameters(BCResNet(12))
    assert model_frontend("bcresnet")["n_mels"] == 40


# -------------------------------------------------------------------------------------- CLI


def test_cli_train_and_evaluate(tiny_dataset: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("AUDIO_COURSE_DATA", str(tmp_path / "data"))  # the int16 cache lands here
    out = tmp_path / "run"
    rc = cli.main(["train", "--data", str(tiny_dataset), "--task", "yesno", "--epochs", "1",
                   "--width", "0.25", "--batch-size", "8", "--out", str(out), "--device", "cpu",
                   "--quiet"])
    assert rc == 0
    for f in ("last.pt", "best.pt", "metrics.json"):
        assert (out / f).is_file(), f
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "yesno" and m["params"] > 0 and 0 <= m["test_accuracy"] <= 1
    assert m["test"]["classes"] == ["yes", "no"] and len(m["test"]["confusion"]) == 2
    assert m["train_seconds"] > 0
    assert T.load_checkpoint(out / "best.pt")["metrics"]["test_accuracy"] == m["test_accuracy"]
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "precision" in printed

    js = tmp_path / "eval.json"
    rc = cli.main(["evaluate", str(out / "best.pt"), "--data", str(tiny_dataset), "--split",
                   "all", "--json", str(js), "--device", "cpu", "--quiet"])
    assert rc == 0
    e = json.loads(js.read_text())
    assert e["n"] == 60 and e["classes"] == ["yes", "no"]  # 30 speakers x 2 words, every clip
    assert math.isclose(sum(map(sum, e["confusion"])), 60)
    assert "every clip" in capsys.readouterr().out


def test_cli_refuses_a_resume_with_other_settings(tiny_dataset: Path, tmp_path, monkeypatch):
    monkeypatch.setenv("AUDIO_COURSE_DATA", str(tmp_path / "data"))
    base = ["train", "--data", str(tiny_dataset), "--task", "yesno", "--epochs", "1", "--width",
            "0.25", "--batch-size", "8", "--out", str(tmp_path / "run"), "--device", "cpu",
            "--quiet"]
    assert cli.main(base) == 0
    assert cli.main([*base, "--lr", "0.5"]) == 1  # a clear error, not a silent restart


def test_cli_trains_on_chosen_words_with_noise_from_another_folder(
    tiny_dataset: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("AUDIO_COURSE_DATA", str(tmp_path / "data"))
    noise = tmp_path / "noise"
    noise.mkdir()
    rng = np.random.default_rng(1)
    import soundfile as sf

    sf.write(noise / "hum.wav", (0.05 * rng.standard_normal(16000 * 10)).astype(np.float32), 16000)
    out = tmp_path / "run"
    argv = ["train", "--data", str(tiny_dataset), "--words", "yes,no,up", "--noise", str(noise),
            "--model", "mfcc1d_plus", "--epochs", "1", "--out", str(out), "--device", "cpu",
            "--quiet"]
    assert cli.main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["test"]["classes"] == ["yes", "no", "up"] and m["task"] == "all"
    capsys.readouterr()
    one = ["train", "--data", str(tiny_dataset), "--words", "yes", "--epochs", "1", "--out",
           str(tmp_path / "one"), "--quiet"]
    assert cli.main(one) == 1
    assert "two or more words" in capsys.readouterr().err


def test_cli_carve_out_tests_on_another_folder(tmp_path: Path, monkeypatch, capsys) -> None:
    from conftest import speakers, write_dataset

    monkeypatch.setenv("AUDIO_COURSE_DATA", str(tmp_path / "data"))
    words = ["yes", "no"]
    mine = write_dataset(tmp_path / "mine", words, speakers(30), lists=False)
    other = write_dataset(tmp_path / "other", words, speakers(40)[30:], lists=False)
    out = tmp_path / "run"
    argv = ["train", "--data", str(mine), "--words", "yes,no", "--test-data", str(other),
            "--carve-out", "--normalise", "clip", "--model", "mfcc1d_plus", "--epochs", "1",
            "--out", str(out), "--device", "cpu", "--quiet"]
    assert cli.main(argv) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_test"] == 20 and m["n_train"] > 40  # every clip of `mine` but the carve-out
    assert m["recipe"]["normalise"] == "clip"
    ck = torch.load(out / "best.pt", weights_only=False)
    assert ck["pipeline"]["normalise"] == "clip"  # predict/export rebuild the same features
    capsys.readouterr()
    assert cli.main(argv[:5] + ["--carve-out", "--out", str(tmp_path / "x"), "--quiet"]) == 1
    assert "test_data" in capsys.readouterr().err


def test_cli_quickstart_wiring(tiny_dataset: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """The quickstart trains the registered 1-D MFCC CNN on the 12-class task of its demo set
    (here a tiny stand-in: its accuracy and time are measured by benchmarks/bench_quickstart.py)."""
    monkeypatch.setenv("AUDIO_COURSE_DATA", str(tmp_path / "data"))
    asked = {}

    def fake_demo(root: Path, n_speakers: int) -> Path:
        asked.update(root=root, n_speakers=n_speakers)
        return tiny_dataset

    monkeypatch.setattr(cli, "make_demo_dataset", fake_demo)
    out = tmp_path / "qs"
    assert cli.main(["quickstart", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    assert asked["n_speakers"] == 240 and asked["root"].parent == tmp_path / "data"
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"] == "mfcc1d_plus" and m["task"] == "12" and m["epochs"] == 1
    assert "quickstart finished" in capsys.readouterr().out


def test_cli_paper_recipe(tiny_dataset: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("AUDIO_COURSE_DATA", str(tmp_path / "data"))
    base = ["train", "--data", str(tiny_dataset), "--task", "yesno", "--epochs", "1",
            "--device", "cpu", "--quiet", "--paper"]
    assert cli.main([*base, "--width", "0.25", "--out", str(tmp_path / "p")]) == 0
    recipe = json.loads((tmp_path / "p" / "metrics.json").read_text())["recipe"]
    assert recipe["optimizer"] == "sgd" and recipe["lr"] == 0.1 and recipe["batch_size"] == 100
    capsys.readouterr()
    assert cli.main([*base, "--model", "cnnet", "--out", str(tmp_path / "c")]) == 1
    assert "no recipe 'cnnet_paper'" in capsys.readouterr().err


def test_unknown_is_redrawn_every_epoch(tiny_dataset: Path, tmp_path: Path) -> None:
    """Training keeps the whole _unknown_ pool and draws ~10 % of the command clips from it each
    epoch; validation and test keep one fixed draw (issue 15)."""
    from audiocourse import data

    splits = data.load_task(tiny_dataset, "12", cache_dir=tmp_path / "c", progress=False)
    tr, va = splits["train"], splits["validation"]
    unk = tr.classes.index("_unknown_")
    pool, per_epoch = int((tr.labels == unk).sum()), tr.unknown_per_epoch
    known = int(np.isin(tr.labels, range(10)).sum())
    assert per_epoch == -(-known // 10) and pool > per_epoch > 0  # cat + dog: more than needed
    assert va.unknown_per_epoch == 0
    src = T._Source(tr, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    a, b = src.epoch_order(gen), src.epoch_order(gen)
    assert len(a) == len(tr) - pool + per_epoch and len(set(a.tolist())) == len(a)
    unk_a, unk_b = (set(o[src.y[o] == unk].tolist()) for o in (a, b))
    assert len(unk_a) == per_epoch and unk_a != unk_b  # a fresh draw
    sub = data.subset_split(tr, np.arange(0, len(tr), 2))
    assert abs(sub.unknown_per_epoch - per_epoch / 2) <= 1  # a subset keeps the share
    hist = T.fit(build_model("mfcc1d_plus", 12), tr, va, epochs=1, batch_size=8, device="cpu",
                 progress=False, pipeline=T.Pipeline(model_frontend("mfcc1d_plus")))
    assert hist[0]["samples_per_s"] > 0
