"""The data layer: audio I/O edge cases, the speaker split rule, task views and the cache."""

from __future__ import annotations

import hashlib
import os
import re
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import REAL_DATA, needs_real, speakers, tone, write_dataset

from audiocourse import data
from audiocourse.data import AudioError


# ------------------------------------------------------------------------------ audio I/O
def test_load_audio_plain(tmp_path: Path) -> None:
    f = tmp_path / "a.wav"
    sf.write(f, tone(440), 16000, subtype="PCM_16")
    x = data.load_audio(f)
    assert x.dtype == np.float32 and x.shape == (16000,)
    assert abs(np.abs(x).max() - 0.5) < 1e-3


def test_load_audio_resamples_and_downmixes(tmp_path: Path) -> None:
    f = tmp_path / "stereo44k.flac"
    left, right = tone(1000, n=44100, sr=44100), tone(1000, n=44100, sr=44100, amp=0.1)
    sf.write(f, np.stack([left, right], axis=1), 44100)
    x = data.load_audio(f)
    assert x.shape == (16000,)  # 1 s at 16 kHz
    spectrum = np.abs(np.fft.rfft(x))
    assert abs(np.argmax(spectrum) - 1000) <= 1  # the tone stays at 1 kHz (1 Hz bins)
    assert abs(np.abs(x[1000:-1000]).max() - 0.3) < 0.02  # mean of 0.5 and 0.1
    both = data.load_audio(f, mono=False, sample_rate=None)
    assert both.shape == (2, 44100)


@pytest.mark.parametrize(
    "content, message",
    [(b"", "empty file"), (b"this is not audio at all" * 10, "not readable as audio")],
)
def test_load_audio_bad_files_name_the_file(tmp_path: Path, content: bytes, message: str) -> None:
    f = tmp_path / "bad.wav"
    f.write_bytes(content)
    with pytest.raises(AudioError, match=re.escape(str(f)) + ".*" + message):
        data.load_audio(f)


def test_load_audio_truncated_and_missing(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    sf.write(good, tone(300), 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:30])  # header only, cut mid-header
    with pytest.raises(AudioError, match="cut.wav"):
        data.load_audio(cut)
    with pytest.raises(AudioError, match="no such file"):
        data.load_audio(tmp_path / "missing.wav")


def test_fix_length_pads_and_keeps_loudest_second() -> None:
    assert data.fix_length(np.ones(100, np.float32)).shape == (16000,)
    x = np.zeros(48000, np.float32)
    x[30000:31000] = 1.0  # the "word" sits in the last second
    y = data.fix_length(x)
    assert y.shape == (16000,) and y.sum() == 1000


# ------------------------------------------------------------------------ speaker splits
def reference_which_set(filename: str, validation_percentage=10, testing_percentage=10) -> str:
    """The rule as printed in the Speech Commands README (with tf's as_bytes spelled out)."""
    base_name = Path(filename).name
    hash_name = re.sub(r"_nohash_.*$", "", base_name)
    hash_name_hashed = hashlib.sha1(hash_name.encode("utf-8")).hexdigest()
    percentage_hash = (int(hash_name_hashed, 16) % (2**27)) * (100.0 / (2**27 - 1))
    if percentage_hash < validation_percentage:
        return "validation"
    if percentage_hash < (testing_percentage + validation_percentage):
        return "test"
    return "train"


def test_which_set_matches_dataset_readme() -> None:
    for spk in speakers(500):
        assert data.which_set(spk) == reference_which_set(f"yes/{spk}_nohash_0.wav")
    counts = Counter(data.which_set(s) for s in speakers(5000))
    assert 400 < counts["validation"] < 600 and 400 < counts["test"] < 600


def test_speaker_ids_in_every_layout() -> None:
    assert data._speaker_of("0a7c2a8d_nohash_1.wav") == "0a7c2a8d"
    assert data._speaker_of("backward_0c540988_nohash_0.wav.wav") == "0c540988"
    assert data._speaker_of("1024.wav") is None  # a _silence_ clip: its own group


def test_index_full_layout_uses_official_lists(tiny_dataset: Path) -> None:
    clips = data.build_index(tiny_dataset)
    val = set((tiny_dataset / "validation_list.txt").read_text().split())
    for c in clips:
        rel = f"{c.word}/{Path(c.path).name}"
        assert (c.split == "validation") == (rel in val)
    assert not any("_background_noise_" in c.path for c in clips)


def test_index_testset_layout_parses_unknown_and_never_crosses_speakers(tmp_path: Path) -> None:
    root = write_dataset(
        tmp_path / "t", ["yes", "no", "cat", "visual"], speakers(40), layout="testset"
    )
    clips = data.build_index(root)
    assert {c.word for c in clips} == {"yes", "no", "cat", "visual", "_silence_"}
    splits_of: dict[str, set[str]] = {}
    for c in clips:
        splits_of.setdefault(c.speaker, set()).add(c.split)
    assert all(len(s) == 1 for s in splits_of.values())
    assert {c.split for c in data.build_index(root, assign="test")} == {"test"}


def test_carve_out_trains_on_every_clip_but_a_speaker_validation_share(tmp_path: Path) -> None:
    spk = speakers(80)
    root = write_dataset(tmp_path / "full", ["yes", "no"], spk)  # official lists present
    listed_test = set((root / "testing_list.txt").read_text().split())
    clips = data.build_index(root, assign="carve")
    by_split = Counter(c.split for c in clips)
    assert set(by_split) == {"train", "validation", "test"}
    # Clips the official list puts in test are never trained on; everything else trains ...
    assert {c.split == "test" for c in clips if f"{c.word}/{Path(c.path).name}" in listed_test} \
        == {True}
    assert by_split["train"] + by_split["validation"] == len(clips) - len(listed_test)
    # ... but a 10 % speaker-hash carve-out, no speaker on both sides.
    share = by_split["validation"] / (by_split["train"] + by_split["validation"])
    assert 0.02 < share < 0.25
    seen: dict[str, set[str]] = {}
    for c in clips:
        seen.setdefault(c.speaker, set()).add(c.split)
    assert all(len(v) == 1 for v in seen.values())
    with pytest.raises(ValueError, match="assign"):
        data.build_index(root, assign="everything")


def test_load_task_tests_on_another_folder(tmp_path: Path) -> None:
    words = ["yes", "no"]
    root = write_dataset(tmp_path / "mine", words, speakers(40), lists=False)
    other = write_dataset(tmp_path / "other", words, speakers(50)[40:], lists=False)
    kw = {"cache_dir": tmp_path / "cache", "progress": False, "words": words}
    with pytest.raises(ValueError, match="test_data"):
        data.load_task(root, "all", carve_out=True, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # disjoint speakers: no warning
        s = data.load_task(root, "all", test_data=other, carve_out=True, **kw)
    assert len(s["test"]) == 20 and set(s["test"].speakers) == set(speakers(50)[40:])
    assert len(s["train"]) + len(s["validation"]) == 80 and len(s["validation"]) > 0
    with pytest.warns(UserWarning, match="also training speakers"):
        data.load_task(root, "all", test_data=root, carve_out=True, **kw)
    odd = write_dataset(tmp_path / "odd", ["yes", "up"], speakers(2), lists=False)
    with pytest.raises(ValueError, match="classes"):  # every word folder of each: they differ
        data.load_task(root, "all", test_data=odd, cache_dir=tmp_path / "cache", progress=False)


def test_folder_from_one_official_split_is_redrawn(tmp_path: Path) -> None:
    # Speakers that all hash to the official 'test' bucket, like the official test-set archive.
    test_spk = [s for s in speakers(3000) if data.which_set(s) == "test"][:60]
    root = write_dataset(tmp_path / "t", ["yes", "no"], test_spk, layout="testset")
    split = Counter(c.split for c in data.build_index(root))
    assert split["train"] > split["test"] > 0 and split["validation"] > 0


# ------------------------------------------------------------------- task views and cache
def test_load_split_12_class_view_and_cache(tiny_dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    d = data.load_split(tiny_dataset, "12", "train", cache_dir=cache, progress=False)
    assert d.audio.dtype == np.int16 and d.audio.shape == (len(d), 16000)
    assert d.classes == data.TASKS["12"]
    counts = d.counts()
    n_known = sum(counts[w] for w in data.COMMANDS_10)
    # the training split keeps the whole unknown pool and draws ~10 % of the known clips from it
    # every epoch (validation/test: one fixed draw); silence made from background noise
    assert d.unknown_per_epoch == int(np.ceil(0.1 * n_known)) < counts["_unknown_"]
    val = data.load_split(tiny_dataset, "12", "validation", cache_dir=cache, progress=False)
    val_known = sum(val.counts()[w] for w in data.COMMANDS_10)
    assert val.counts()["_unknown_"] <= max(1, int(np.ceil(0.1 * val_known)))
    assert counts["_silence_"] == int(np.ceil(0.1 * n_known))
    silence = d.audio[d.labels == d.classes.index("_silence_")]
    assert (np.abs(silence.astype(np.int32)).max(axis=1) > 0).any()  # noise, not only zeros
    # short clips were zero-padded at the end, the tone is intact
    row = d.audio[0].astype(np.float32) / 32768
    assert abs(np.abs(row[:15000]).max() - 0.5) < 1e-3
    t0 = time.perf_counter()
    again = data.load_split(tiny_dataset, "12", "train", cache_dir=cache, progress=False)
    assert time.perf_counter() - t0 < 1.0
    assert isinstance(again.audio, np.memmap)
    np.testing.assert_array_equal(again.audio, d.audio)
    assert again.paths == d.paths


def test_cache_invalidated_when_a_file_changes(tiny_dataset: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = data.load_split(tiny_dataset, "yesno", "train", cache_dir=cache, progress=False)
    target = Path(first.paths[0])
    sf.write(target, tone(3000), 16000, subtype="PCM_16")
    second = data.load_split(tiny_dataset, "yesno", "train", cache_dir=cache, progress=False)
    assert not np.array_equal(first.audio[0], second.audio[0])


def test_bad_files_are_skipped_loudly_and_others_kept(tiny_dataset: Path, tmp_path: Path) -> None:
    clips = [c for c in data.build_index(tiny_dataset) if c.word == "yes" and c.split == "train"]
    Path(clips[0].path).write_bytes(b"")  # empty
    Path(clips[1].path).write_bytes(b"RIFF....WAVEjunk" * 4)  # corrupt
    sf.write(clips[2].path, np.stack([tone(500, 8000), tone(500, 8000)], 1), 8000)  # stereo 8k
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = data.load_split(
            tiny_dataset, "yesno", "train", cache_dir=tmp_path / "c", progress=False
        )
    message = " ".join(str(w.message) for w in caught)
    assert "2 of" in message and Path(clips[0].path).name in message
    assert Path(clips[1].path).name in message
    assert len(d.errors) == 2 and clips[0].path not in d.paths
    n_expected = (
        sum(
            1
            for c in data.build_index(tiny_dataset)
            if c.word in ("yes", "no") and c.split == "train"
        )
        - 2
    )
    assert len(d) == n_expected
    row = d.audio[d.paths.index(clips[2].path)].astype(np.float32) / 32768
    assert np.abs(row[:15000]).max() > 0.4  # resampled and downmixed, not dropped


def test_parallel_decode_matches_sequential(
    tiny_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    seq = data.load_split(tiny_dataset, "35", "train", cache_dir=tmp_path / "a", progress=False)
    monkeypatch.setattr(data, "_DECODE_CHUNK", 7)  # many small chunks: the process-pool path
    par = data.load_split(tiny_dataset, "35", "train", cache_dir=tmp_path / "b", progress=False)
    assert len(seq) >= 4 * 7
    np.testing.assert_array_equal(seq.audio, par.audio)


def test_background_noise_splits_do_not_overlap(tiny_dataset: Path) -> None:
    tr = data.background_noise(tiny_dataset, "train")
    te = data.background_noise(tiny_dataset, "test")
    assert tr.shape[1] == 16000 and len(tr) > len(te) > 0
    assert not any(np.array_equal(a, b) for a in tr for b in te)


def test_resolve_dataset_errors_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a known dataset"):
        data.resolve_dataset(str(tmp_path / "nope"))
    assert data.resolve_dataset(str(tmp_path)) == tmp_path.resolve()


# ------------------------------------------------------------------------- the real clips
@needs_real
def test_real_clips_index_and_speaker_disjoint_split(tmp_path: Path) -> None:
    clips = data.build_index(REAL_DATA)
    assert len(clips) > 3000
    splits_of: dict[str, set[str]] = {}
    for c in clips:
        splits_of.setdefault(c.speaker, set()).add(c.split)
    assert all(len(s) == 1 for s in splits_of.values())
    d = data.load_split(REAL_DATA, "12", "test", cache_dir=tmp_path, progress=False)
    assert set(d.counts().values()) and min(d.counts().values()) > 20
    assert not d.errors


# ------------------------------------------------- noise from elsewhere, one's own words
def test_noise_dir_feeds_silence_and_augmentation(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("AUDIO_COURSE_NOISE", raising=False)
    root = write_dataset(tmp_path / "sc", ["yes", "no", "cat"], speakers(30), noise=False)
    assert len(data.background_noise(root)) == 0  # no _background_noise_ and no _silence_
    noise_parent = write_dataset(tmp_path / "n", ["up"], speakers(1), lists=False)
    monkeypatch.setenv("AUDIO_COURSE_NOISE", str(noise_parent))  # the fallback CI sets
    from_env = data.background_noise(root)
    assert len(from_env) == len(data.background_noise(root, noise_dir=noise_parent)) > 0
    monkeypatch.delenv("AUDIO_COURSE_NOISE")
    for where in (noise_parent, noise_parent / "_background_noise_"):  # the folder or its parent
        tr = data.background_noise(root, "train", noise_dir=where)
        te = data.background_noise(root, "test", noise_dir=where)
        assert tr.shape[1] == 16000 and len(tr) > len(te) > 0
        assert not any(np.array_equal(a, b) for a in tr for b in te)  # 80/10/10 in time
    d = data.load_split(root, "12", "train", cache_dir=tmp_path / "c", progress=False,
                        noise_dir=noise_parent)  # fmt: skip
    silence = d.audio[d.labels == d.classes.index("_silence_")]
    assert len(silence) and (np.abs(silence.astype(np.int32)).max(axis=1) > 0).any()
    with pytest.raises(FileNotFoundError, match="noise_dir"):
        data.background_noise(root, noise_dir=tmp_path / "nowhere")


def test_task_all_and_a_word_subset_of_ones_own_folder(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "mine", ["yes", "no", "up", "hello"], speakers(40), lists=False)
    splits = data.load_task(root, "all", cache_dir=tmp_path / "c", progress=False)
    assert splits["train"].classes == ["hello", "no", "up", "yes"]
    speakers_in = {s: set(d.speakers) for s, d in splits.items()}
    assert not speakers_in["train"] & (speakers_in["validation"] | speakers_in["test"])
    for s, d in splits.items():
        assert all(data.which_set(spk) == s for spk in d.speakers)  # the README's hash rule
    sub = data.load_split(root, "all", "train", words=["yes", "no", "up"],
                          cache_dir=tmp_path / "c", progress=False)  # fmt: skip
    assert sub.classes == ["yes", "no", "up"] and set(sub.counts()) == {"yes", "no", "up"}
    assert len(sub) == sum(splits["train"].counts()[w] for w in ("yes", "no", "up"))


def test_task_all_refuses_unusable_folders(tmp_path: Path) -> None:
    one = write_dataset(tmp_path / "one", ["yes"], speakers(5), lists=False)
    with pytest.raises(ValueError, match="two or more words"):
        data.load_split(one, "all", "train", cache_dir=tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="two or more words"):
        data.load_split(one, "all", "train", words=["yes", "nope"], cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="task 'all'"):
        data.load_split(one, "10", "train", words=["yes"], cache_dir=tmp_path / "c")
    nameless = tmp_path / "nameless"
    for word in ("yes", "no"):
        (nameless / word).mkdir(parents=True)
        sf.write(nameless / word / "take1.wav", tone(300), 16000, subtype="PCM_16")
    with pytest.raises(ValueError, match="no speaker id.*take1.wav"):
        data.load_split(nameless, "all", "train", cache_dir=tmp_path / "c", progress=False)


def test_a_folder_without_lists_splits_by_speaker_hash(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "sc", ["yes", "no"], speakers(60), lists=False)
    assert all(c.split == data.which_set(c.speaker) for c in data.build_index(root))


def test_format_constants_and_split_rule_come_from_the_layer_below() -> None:
    from audiocourse import demo

    assert data.SAMPLE_RATE is demo.SAMPLE_RATE and data.which_set is demo.which_set


_SHARED = "/work/shared/data/speech_commands_background_noise"
NOISE = Path(os.environ.get("AUDIO_COURSE_NOISE", _SHARED))


@needs_real
@pytest.mark.skipif(not NOISE.is_dir(), reason="set AUDIO_COURSE_NOISE to _background_noise_")
def test_real_test_set_takes_noise_from_another_folder(tmp_path: Path) -> None:
    assert not (Path(REAL_DATA) / "_background_noise_").is_dir()  # the official test-set layout
    noise = data.background_noise(REAL_DATA, "train", noise_dir=NOISE)
    assert len(noise) > 100 and noise.shape[1] == 16000
    d = data.load_split(REAL_DATA, "all", "validation", words=["yes", "no"], cache_dir=tmp_path,
                        progress=False, noise_dir=NOISE)  # fmt: skip
    assert d.classes == ["yes", "no"] and min(d.counts().values()) > 20


def test_pool_splits_concatenates_and_checks_classes(tiny_dataset: Path, tmp_path: Path) -> None:
    splits = data.load_task(tiny_dataset, "10", cache_dir=tmp_path / "c", progress=False)
    pool = data.pool_splits(splits["train"], splits["validation"])
    assert len(pool) == len(splits["train"]) + len(splits["validation"])
    assert pool.speakers[-1] == splits["validation"].speakers[-1]
    np.testing.assert_array_equal(pool.audio[: len(splits["train"])], splits["train"].audio)
    yesno = data.load_split(tiny_dataset, "yesno", "test", cache_dir=tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="same classes"):
        data.pool_splits(splits["train"], yesno)
