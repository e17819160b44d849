"""colab_setup.sh and the download command, end to end against a local HTTP server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _setup(data_dir: Path, url: str, sha: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHON": sys.executable,
        "AUDIO_COURSE_DATASET": "mini",
        "AUDIO_COURSE_URL": url,
        "AUDIO_COURSE_SHA256": sha,
        "AUDIO_COURSE_DATA": str(data_dir),
        "HOME": str(data_dir.parent),
    }
    return subprocess.run(
        ["bash", "colab_setup.sh", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_colab_setup_installs_nothing_downloads_nothing_and_reports(
    served_dataset, tmp_path: Path
) -> None:
    url, sha, _, requests = served_dataset
    t0 = time.perf_counter()
    result = _setup(tmp_path / "drive", url, sha)  # what every notebook's setup cell runs
    took = time.perf_counter() - t0
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "working pair, kept" in out and "all other packages present" in out
    assert "installing" not in out and took < 60  # one look-up, no pip when all is there
    assert "GPU: none" in out and "Change runtime type" in out and "torch sees no CUDA" in out
    assert requests == [] and not (tmp_path / "drive").exists()  # no dataset unless asked


def test_colab_setup_download_on_request(served_dataset, tmp_path: Path) -> None:
    url, sha, _, requests = served_dataset
    first = _setup(tmp_path / "x", url, sha, "--download", str(tmp_path / "drive"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"dataset: {tmp_path / 'drive' / 'mini'}" in first.stdout
    assert "not downloaded" not in first.stdout
    assert (tmp_path / "drive" / "mini" / "yes").is_dir()
    n_requests = len(requests)
    second = _setup(tmp_path / "x", url, sha, "--download", str(tmp_path / "drive"))
    assert second.returncode == 0 and len(requests) == n_requests  # idempotent: no download
    assert "installing" not in second.stdout
    default = _setup(tmp_path / "data", url, sha, "--download")  # no DIR: data_dir()
    assert default.returncode == 0 and (tmp_path / "data" / "mini" / "yes").is_dir()


def test_colab_setup_reports_a_bad_checksum_and_leaves_nothing(served_dataset, tmp_path: Path):
    url, _, _, _ = served_dataset
    result = _setup(tmp_path / "x", url, "0" * 64, "--download", str(tmp_path / "drive"))
    assert result.returncode == 0  # the rest of the set-up still completes ...
    assert "0" * 64 in result.stderr and "dataset is not ready" in result.stderr  # ... loudly
    assert "not downloaded" in result.stdout
    assert not (tmp_path / "drive" / "mini").exists()


def _online(host: str = "download.tensorflow.org") -> bool:
    try:
        socket.getaddrinfo(host, 80)
        return True
    except OSError:
        return False


@pytest.mark.skipif(_online(), reason="this machine has internet: it would really download")
def test_download_command_fails_fast_offline_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "x"
    t0 = time.perf_counter()
    result = subprocess.run(
        [
            sys.executable,
            "utils.py",
            "download",
            "--dataset",
            "speech_commands_test_set_v0.02",
            "--root",
            str(target),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.perf_counter() - t0 < 60
    assert result.returncode == 1
    assert "download.tensorflow.org" in result.stderr and "--url" in result.stderr
    assert not target.exists()
