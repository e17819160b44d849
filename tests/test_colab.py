"""The Colab path as a new user meets it: a fresh runtime holding one notebook, a clone that fails,
and data on Google Drive surviving a runtime reset (a temporary folder stands in for Drive)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nbformat
import pytest
from conftest import NOTEBOOKS
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ("01_", "06_")  # run top to bottom; the others run their setup cell only
REPO_DEFAULT = re.compile(r'os\.environ\.get\("AUDIO_COURSE_REPO", "([^"]+)"\)')
BADGE = re.compile(r"https://colab\.research\.google\.com/github/([^/]+/[^/]+)/blob/[^/]+/(\S+?)\)")


def _setup_source(path: Path) -> str:
    return nbformat.read(path, as_version=4).cells[1].source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_one_course_url_in_readme_badges_and_setup_cells(path: Path) -> None:
    readme = dict((f, repo) for repo, f in BADGE.findall((ROOT / "README.md").read_text()))
    assert f"notebooks/{path.name}" in readme, f"README has no Colab badge for {path.name}"
    (home,) = set(readme.values())  # one course home, written the same everywhere
    (default,) = REPO_DEFAULT.findall(_setup_source(path))
    assert default == f"https://github.com/{home}"
    first = nbformat.read(path, as_version=4).cells[0].source
    assert BADGE.findall(first) == [(home, f"notebooks/{path.name}")], "badge of the notebook"


# ------------------------------------------------------------------ a fresh Colab runtime


@pytest.fixture(scope="module")
def course_repo(tmp_path_factory) -> str:
    """A git repository holding this working tree (uncommitted edits included), as a file:// URL."""
    src = tmp_path_factory.mktemp("origin") / "audio-course"
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if listed.returncode != 0:  # not a git checkout (an unpacked archive): copy the sources
        skip = shutil.ignore_patterns(".*", "data", "runs", "__pycache__", "*.pt", "*.npy")
        shutil.copytree(ROOT, src, ignore=skip)
    for rel in filter(None, listed.stdout.split("\0")):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "course"]):
        subprocess.run([*git, *args], cwd=src, check=True, capture_output=True)
    return src.as_uri()


@pytest.fixture
def network_log():
    """An HTTP(S) proxy on 127.0.0.1 that refuses and records every request sent through it."""
    seen: list[str] = []

    class Refuse(BaseHTTPRequestHandler):
        def _refuse(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.send_error(403, "no network in this test")

        do_GET = do_HEAD = do_POST = do_CONNECT = _refuse

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def _colab_env(tmp: Path, repo: str, proxy: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIO_COURSE", "PYTHON"))}
    env.update(
        COLAB_RELEASE_TAG="release-colab-test",
        AUDIO_COURSE_REPO=repo,
        HOME=str(tmp / "home"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        MPLCONFIGDIR=str(tmp / "mpl"),  # Colab ships matplotlib's font cache; do not time it
    )
    if proxy:  # every download (urllib, pip, git over http) goes through it and is recorded
        for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
            env[key] = proxy
        env["no_proxy"] = env["NO_PROXY"] = ""
    (tmp / "home").mkdir(exist_ok=True)
    return env


def _execute(nb, folder: Path, env: dict[str, str], allow_errors: bool = False) -> float:
    client = NotebookClient(
        nb, timeout=900, kernel_name="python3", allow_errors=allow_errors,
        resources={"metadata": {"path": str(folder)}},
    )  # fmt: skip
    t0 = time.perf_counter()
    client.execute(env=env, cwd=str(folder))
    return time.perf_counter() - t0


def _text(cell) -> str:
    return "".join(o.get("text", "") + o.get("evalue", "") for o in cell.get("outputs", []))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_fresh_colab_runtime(path: Path, course_repo: str, network_log, tmp_path: Path) -> None:
    proxy, requests = network_log
    content = tmp_path / "content"  # what Colab's /content holds: only the opened notebook
    content.mkdir()
    shutil.copy(path, content)
    nb = nbformat.read(content / path.name, as_version=4)
    if path.name.startswith(EXECUTED):
        (at,) = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell('DATASET = "demo"\nFAST = True'))
    else:
        nb.cells = nb.cells[:2]  # the badge and the setup cell
    took = _execute(nb, content, _colab_env(tmp_path, course_repo, proxy))
    print(f"{path.name}: fresh simulated Colab runtime, {len(nb.cells)} cells in {took:.1f} s")

    course = content / "audio-course"
    assert (course / "utils.py").is_file(), "the setup cell did not clone the course"
    setup = _text(nb.cells[1])
    assert "working pair, kept" in setup and "all other packages present" in setup, setup
    assert "installing" not in setup and "GPU:" in setup
    assert requests == [], f"the notebook tried to download: {requests}"
    fetched = [p.name for p in (course / "data").glob("speech_commands_v0.0*")]
    assert not fetched, f"full dataset files appeared: {fetched}"


@pytest.mark.parametrize(
    ("repo", "colab", "message"),
    [
        ("/nonexistent/audio-course", True, "Could not clone the course from /nonexistent"),
        ("http://127.0.0.1:9/audio-course.git", True, "set AUDIO_COURSE_REPO"),
        ("/nonexistent/audio-course", False, "utils.py not found"),
    ],
    ids=["missing-folder", "offline-url", "not-colab"],
)
def test_setup_cell_stops_with_one_clear_message(
    repo: str, colab: bool, message: str, tmp_path: Path
) -> None:
    content = tmp_path / "content"
    content.mkdir()
    nb = nbformat.read(NOTEBOOKS[0], as_version=4)
    nb.cells = nb.cells[:2]
    env = _colab_env(tmp_path, repo)
    if not colab:
        del env["COLAB_RELEASE_TAG"]
    _execute(nb, content, env, allow_errors=True)
    (error,) = [o for o in nb.cells[1].outputs if o.output_type == "error"]
    assert error.ename == "SystemExit" and message in error.evalue, error
    assert "StopIteration" not in json.dumps(nb.cells[1].outputs)
    assert not (content / "audio-course").exists()


# ------------------------------------------------------------ data and runs on Google Drive
# (the archive server is conftest.served_dataset)


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_drive_keeps_data_cache_and_runs_across_a_reset(
    served_dataset, tmp_path: Path, monkeypatch
) -> None:
    import soundfile

    from audiocourse import download
    from audiocourse.data import load_task, resolve_dataset
    from audiocourse.env import data_dir, runs_dir

    url, sha, size, log = served_dataset
    name = "speech_commands_v0.02"
    entry = download.DATASETS[name]._replace(url=url, sha256=sha, size=size)
    monkeypatch.setitem(download.DATASETS, name, entry)
    drive = tmp_path / "MyDrive"  # stands in for /content/drive/MyDrive
    drive.mkdir()
    for var in ("AUDIO_COURSE_DATA", "AUDIO_COURSE_HOME"):  # set first: teardown restores
        monkeypatch.setenv(var, "unset")  # the real value, whatever use_drive() set
        monkeypatch.delenv(var)
    monkeypatch.setenv("AUDIO_COURSE_DRIVE", str(drive))
    home = drive / "audio-course"

    root = resolve_dataset(name, drive=True)  # first run: download, extract, decode, cache
    first = load_task(root, "yesno", progress=False)
    assert root == home / "data" / name and len(log) == 1
    assert data_dir() == home / "data" and runs_dir() == home / "runs"
    on_drive = _files(home)
    assert any(k.startswith("data/cache") for k in on_drive), "the int16 cache is not on Drive"

    monkeypatch.delenv("AUDIO_COURSE_HOME")  # a runtime reset forgets the environment ...
    decoded = []
    read = soundfile.read
    monkeypatch.setattr(soundfile, "read", lambda *a, **k: decoded.append(a) or read(*a, **k))
    t0 = time.perf_counter()
    root2 = resolve_dataset(name, drive=True)  # ... and the re-run finds everything on Drive
    again = load_task(root2, "yesno", progress=False)
    took = time.perf_counter() - t0
    print(f"reload after a simulated reset: {took:.2f} s for {sum(map(len, again.values()))} clips")
    assert root2 == root and len(log) == 1, "downloaded again"
    assert decoded == [], "decoded again instead of reading the cache"
    assert _files(home) == on_drive, "files on Drive were rewritten"
    for split, data in first.items():
        assert (again[split].audio == data.audio).all()


def test_use_drive_outside_colab_changes_nothing(monkeypatch) -> None:
    from audiocourse.env import data_dir, use_drive

    for var in ("AUDIO_COURSE_DRIVE", "AUDIO_COURSE_HOME", "COLAB_RELEASE_TAG"):
        monkeypatch.delenv(var, raising=False)
    before = data_dir()
    assert use_drive() is None and data_dir() == before and "AUDIO_COURSE_HOME" not in os.environ
