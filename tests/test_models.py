"""Models, registry and the PNG image route of notebooks 03-04 (fast: tiny inputs, no training)."""

from __future__ import annotations

import ast
import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audiocourse import data, images, models
from audiocourse.features import make_frontend
from audiocourse.models import (
    CNNet,
    CNNetOriginal,
    MfccCnn1d,
    MfccCnn1dPlus,
    build_model,
    model_frontend,
)
from audiocourse.train import count_parameters as count_params


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seeded; one thread: these tensors are tiny, and thread hand-offs dominate on a busy CPU."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------ CNNetOriginal


def test_original_matches_the_published_layers():
    m = CNNetOriginal()
    assert m.conv1.in_channels == 3 and m.conv1.out_channels == 32
    assert m.conv1.kernel_size == (5, 5) and m.conv2.kernel_size == (5, 5)
    assert (m.fc1.in_features, m.fc1.out_features) == (51136, 50)
    assert (m.fc2.in_features, m.fc2.out_features) == (50, 2)
    # conv1 2432 + conv2 51264 + fc1 2556850 + fc2 102
    assert count_params(m) == 2432 + 51264 + 51136 * 50 + 50 + 102 == 2_610_648


@pytest.mark.parametrize("shape", [(4, 3, 201, 81), (4, 1, 201, 81), (4, 201, 81)])
def test_original_accepts_images_and_tensors(shape):
    out = CNNetOriginal().eval()(torch.randn(shape))
    assert out.shape == (4, 2)
    # it returns log-probabilities: each row's exp sums to 1
    torch.testing.assert_close(out.exp().sum(1), torch.ones(4))


def test_original_grey_input_equals_rgb_copy():
    m = CNNetOriginal().eval()
    x = torch.randn(2, 201, 81)
    torch.testing.assert_close(m(x), m(x.unsqueeze(1).repeat(1, 3, 1, 1)))


def test_original_only_fits_its_image_size():
    with pytest.raises(RuntimeError):
        CNNetOriginal()(torch.randn(2, 3, 40, 101))


def test_original_relu_on_logits_flaw():
    """The last ReLU clamps the 'logits' to >= 0: a dead unit pins the output at 50/50."""
    m = CNNetOriginal().eval()
    captured = {}
    m.fc2.register_forward_hook(lambda mod, inp, out: captured.update(pre=out))
    x = torch.randn(8, 3, 201, 81)
    logp = m(x)
    relu_logits = torch.relu(captured["pre"])
    assert (relu_logits >= 0).all()
    torch.testing.assert_close(logp, torch.log_softmax(relu_logits, 1))
    # force both pre-activations negative: the prediction is exactly uniform, loss = ln 2 and
    # no gradient reaches the weights
    with torch.no_grad():
        m.fc2.bias.fill_(-1e3)
    m.train()
    out = m(x)
    torch.testing.assert_close(out, torch.full_like(out, -math.log(2)))
    loss = nn.functional.cross_entropy(out, torch.randint(0, 2, (8,)))
    assert loss.item() == pytest.approx(math.log(2))
    loss.backward()
    assert m.conv1.weight.grad is None or m.conv1.weight.grad.abs().max() == 0


def test_log_softmax_into_cross_entropy_is_idempotent():
    """Flaw 2 is wrong usage but harmless: log_softmax(log_softmax(z)) == log_softmax(z)."""
    z = torch.randn(8, 2)
    y = torch.randint(0, 2, (8,))
    ce_twice = nn.functional.cross_entropy(torch.log_softmax(z, 1), y)
    torch.testing.assert_close(ce_twice, nn.functional.cross_entropy(z, y))


def _class_ast(source: str, name: str) -> str:
    """The class ``name`` in ``source`` as an AST dump without docstrings (comments never count)."""
    tree = ast.parse(source)
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name)
    for node in ast.walk(cls):
        body = getattr(node, "body", None)
        first = body[0] if isinstance(body, list) and body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                and isinstance(first.value.value, str):  # fmt: skip
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(cls)


@pytest.mark.parametrize("notebook, cls", [("03_cnn_spectrogram_images", CNNetOriginal),
                                           ("03b_fixed_cnn_and_speaker_leaks", CNNet),
                                           ("04_mfcc_1d_cnn", MfccCnn1d),
                                           ("04_mfcc_1d_cnn", MfccCnn1dPlus)])  # fmt: skip
def test_notebook_writes_the_same_class_as_the_module(notebook, cls):
    """One source: the class the notebook writes in front of the learner is the module's."""
    nb = json.loads((Path(__file__).parents[1] / "notebooks" / f"{notebook}.ipynb").read_text())
    header = f"class {cls.__name__}(nn.Module):"
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    written = [src for src in cells if header in src]
    assert len(written) == 1, f"{notebook} should define {cls.__name__} in exactly one cell"
    assert _class_ast(written[0], cls.__name__) == _class_ast(inspect.getsource(cls), cls.__name__)


# ------------------------------------------------------------------------------ CNNet (fixed)


@pytest.mark.parametrize("shape", [(3, 201, 81), (3, 1, 201, 81), (3, 40, 101), (3, 1, 64, 64)])
@pytest.mark.parametrize("extra_blocks", [0, 1])
def test_cnnet_any_input_size(shape, extra_blocks):
    m = CNNet(n_classes=5, extra_blocks=extra_blocks).eval()
    assert m(torch.randn(shape)).shape == (3, 5)
    convs = [x for x in m.modules() if isinstance(x, nn.Conv2d)]
    assert len(convs) == 2 + extra_blocks


def test_cnnet_returns_raw_logits_and_is_small():
    m = CNNet(n_classes=2).eval()
    out = m(torch.randn(16, 201, 81) * 3)
    assert (out < 0).any()  # no ReLU on the logits
    assert not torch.allclose(out.exp().sum(1), torch.ones(16))  # not log-probabilities
    assert m.features[0].in_channels == 1
    assert any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    assert count_params(m) < count_params(CNNetOriginal()) / 10


def test_cnnet_learns_a_toy_problem():
    """One honest optimisation check: a few steps separate two obviously different classes."""
    x = torch.randn(32, 1, 24, 24)
    y = torch.arange(32) % 2
    x[y == 1, :, :12] += 2.0  # class 1 has energy in the low rows
    m = CNNet(n_classes=2, channels=(8, 16), pool=(2, 2), hidden=16, dropout=0.0)
    opt = torch.optim.Adam(m.parameters(), 3e-3)
    for _ in range(30):
        loss = nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    assert (m(x).argmax(1) == y).float().mean() == 1.0


# ------------------------------------------------------------------------------ 1-D MFCC CNNs


def test_mfcc1d_shapes_and_params():
    m = MfccCnn1d(n_classes=10, n_mfcc=13, n_frames=101).eval()
    assert m(torch.randn(4, 13, 101)).shape == (4, 10)
    assert m(torch.randn(4, 1, 13, 101)).shape == (4, 10)
    # conv 13*64*3+64, dense 64*49*128+128, out 128*10+10
    assert count_params(m) == 13 * 64 * 3 + 64 + 64 * 49 * 128 + 128 + 1290
    with pytest.raises(RuntimeError):  # Flatten ties it to 101 frames
        m(torch.randn(4, 13, 90))


def test_plus_with_everything_off_is_the_plain_model():
    plain = MfccCnn1d(n_classes=10)
    off = MfccCnn1dPlus(
        n_classes=10, deltas=0, batch_norm=False, gap=False, blocks=1, kernel_size=3
    )
    assert [tuple(p.shape) for p in plain.parameters()] == [
        tuple(p.shape) for p in off.parameters()
    ]
    off.load_state_dict(plain.state_dict())
    x = torch.randn(3, 13, 101)
    torch.testing.assert_close(plain.eval()(x), off.eval()(x))


@pytest.mark.parametrize(
    "kw, channels",
    [
        ({"deltas": 0}, 13),
        ({"deltas": 2}, 39),
        ({"deltas": 2, "batch_norm": False}, 39),
        ({"deltas": 2, "gap": False}, 39),
        ({"deltas": 1, "blocks": 1}, 26),
        ({"n_mfcc": 20, "deltas": 2, "blocks": 3}, 60),
    ],
)
def test_plus_variants(kw, channels):
    m = MfccCnn1dPlus(n_classes=10, **kw).eval()
    assert m(torch.randn(2, channels, 101)).shape == (2, 10)
    has_bn = any(isinstance(x, nn.BatchNorm1d) for x in m.modules())
    assert has_bn == kw.get("batch_norm", True)


def test_gap_makes_the_1d_model_length_free_and_smaller():
    gap = MfccCnn1dPlus(n_classes=10, gap=True)
    flat = MfccCnn1dPlus(n_classes=10, gap=False)
    assert gap.eval()(torch.randn(2, 39, 60)).shape == (2, 10)
    assert count_params(gap) < count_params(flat)


# ------------------------------------------------------------------------------ registry


@pytest.mark.parametrize("name", ["cnnet_original", "cnnet", "mfcc1d", "mfcc1d_plus"])
def test_registry_round_trip(name):
    """build_model + model_frontend agree: the frontend's output feeds the model."""
    n_classes = 2 if "cnnet" in name else 10
    model = build_model(name, n_classes).eval()
    assert isinstance(model, models.MODELS[name][0])
    frontend = make_frontend(model_frontend(name))
    feats = frontend(torch.randn(2, 16000) * 0.1)
    assert model(feats).shape == (2, n_classes)
    # the state dict loads into a fresh instance built the same way (what load_model does)
    again = build_model(name, n_classes)
    again.load_state_dict(model.state_dict())


def test_model_frontends():
    assert model_frontend("cnnet") == {"kind": "spectrogram", "n_fft": 400, "hop_length": 200}
    assert model_frontend("cnnet_original")["kind"] == "spectrogram"
    assert model_frontend("mfcc1d")["deltas"] == 0
    assert model_frontend("mfcc1d_plus")["deltas"] == 2
    assert model_frontend("mfcc1d_plus", deltas=0, n_mfcc=20)["n_mfcc"] == 20
    assert model_frontend("bcresnet")["kind"] == "logmel"
    # the returned dict is a copy
    model_frontend("cnnet")["n_fft"] = 1
    assert model_frontend("cnnet_original")["n_fft"] == 400


def test_mfcc_kwargs_keep_frontend_and_model_in_step():
    kw = {"n_mfcc": 20, "deltas": 1}
    feats = make_frontend(model_frontend("mfcc1d_plus", **kw))(torch.randn(2, 16000) * 0.1)
    assert feats.shape[1] == 40
    assert build_model("mfcc1d_plus", 10, **kw).eval()(feats).shape == (2, 10)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="known"):
        build_model("resnet9000", 2)
    with pytest.raises(ValueError, match="known"):
        model_frontend("resnet9000")


def test_bcresnet_through_the_registry():
    m = build_model("bcresnet", 12).eval()
    assert m(torch.randn(2, 40, 101)).shape == (2, 12)


# ------------------------------------------------------------------------------ image route


@pytest.fixture()
def png_folder(tmp_path):
    """A tiny exported PNG folder: 3 + 2 clips of two classes (as notebook 02 writes it)."""
    from audiocourse.features import export_spectrogram_pngs

    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    audio = []
    for k in range(5):
        f = 300 if k < 3 else 3000
        x = 0.3 * np.sin(2 * np.pi * f * t) + 0.01 * rng.standard_normal(16000)
        audio.append((x * 32767).astype(np.int16))
    audio = np.stack(audio)
    labels = np.array([0, 0, 0, 1, 1])
    classes = ["yes", "no"]
    paths = [f"/x/{c}/{i:08x}_nohash_0.wav" for i, c in enumerate(np.take(classes, labels))]
    info = export_spectrogram_pngs(audio, labels, classes, tmp_path / "png", paths=paths)
    return tmp_path / "png", audio, labels, classes, info


def test_image_folder_fixed_mode_equals_in_memory_pixels(png_folder):
    root, audio, labels, classes, info = png_folder
    ds = images.SpectrogramImageFolder(root, "fixed", classes=classes)
    assert len(ds) == 5 and ds.classes == classes
    x, y = ds.tensors()
    assert x.shape == (5, 1, 201, 81) and x.min() >= 0 and x.max() <= 1
    rows = [int(f.name[:6]) for f in ds.files]
    np.testing.assert_array_equal(y.numpy(), labels[rows])
    px = images.pixels_from_audio(audio, info["db_range"])
    torch.testing.assert_close(x[:, 0], px[rows], atol=1e-6, rtol=0)
    # row 0 is the lowest frequency: a 300 Hz tone is bright near the bottom rows
    low_tone = x[0, 0]
    assert low_tone[:20].mean() > low_tone[-50:].mean()
    assert ds.sources[0].endswith(".wav")


def test_image_folder_original_mode_is_rgb_copy(png_folder):
    root, *_ = png_folder
    ds = images.SpectrogramImageFolder(root, "original")
    assert ds.classes == ["no", "yes"]  # ImageFolder's default: sorted folder names
    x, _ = ds[0]
    assert x.shape == (3, 201, 81)
    torch.testing.assert_close(x[0], x[1])
    torch.testing.assert_close(x[1], x[2])
    # the original's Resize: any stored size comes out 201 x 81
    small = images._load_png(ds.files[0], "original", size=(100, 40))
    assert small.shape == (3, 100, 40)


def test_image_loader_batches_for_fit(png_folder):
    root, _, _, classes, _ = png_folder
    loader = images.image_loader(root, batch_size=2, shuffle=False, mode="fixed", classes=classes)
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [2, 2, 1]
    assert batches[0][0].shape == (2, 1, 201, 81)
    out = CNNet(2).eval()(batches[0][0])
    assert out.shape == (2, 2)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        images.SpectrogramImageFolder(tmp_path / "missing")
    (tmp_path / "yes").mkdir()
    with pytest.raises(FileNotFoundError, match="no .png"):
        images.SpectrogramImageFolder(tmp_path)
    with pytest.raises(FileNotFoundError, match="no folder"):
        images.SpectrogramImageFolder(tmp_path, classes=["yes", "no"])
    with pytest.raises(ValueError):
        images.SpectrogramImageFolder(tmp_path, mode="rgb")


def test_leaky_split_mixes_speakers_and_disjoint_split_does_not():
    speakers = [f"s{i // 4}" for i in range(200)]  # 50 speakers, 4 clips each
    train_idx, test_idx = data._random_split_indices(200, (0.8, 0.2), seed=0)
    assert len(train_idx) == 160 and len(test_idx) == 40
    assert sorted(np.concatenate([train_idx, test_idx])) == list(range(200))
    leak = data.speaker_overlap(np.take(speakers, train_idx), np.take(speakers, test_idx))
    assert leak["fraction_clips"] > 0.5  # most test clips come from speakers heard in training
    by_speaker = [i for i in range(200) if int(speakers[i][1:]) < 40]
    rest = [i for i in range(200) if int(speakers[i][1:]) >= 40]
    clean = data.speaker_overlap(np.take(speakers, by_speaker), np.take(speakers, rest))
    assert clean["test_clips_seen_speaker"] == 0
    # same seed -> same split
    again = data._random_split_indices(200, (0.8, 0.2), seed=0)
    assert again[1].tolist() == test_idx.tolist()
