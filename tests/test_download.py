"""Tests for audiocourse.download against a real local HTTP server (no internet needed)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import socket
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from audiocourse import download as dl
from audiocourse.download import DownloadError, download_dataset

download_file, extract_archive = dl._download_file, dl._extract_archive

WORDS = ["yes", "no", "up"]
SPEAKERS = ["0a7c2a8d", "1b4c9b89", "c1d39ce8"]


# --------------------------------------------------------------------------------------------
# a small Speech Commands-like archive
# --------------------------------------------------------------------------------------------


def _wav_bytes(seed: int, n: int = 1600) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    sf.write(buf, (rng.standard_normal(n) * 1000).astype(np.int16), 16000, format="WAV")
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, **kw) -> None:
    info = tarfile.TarInfo(name)
    for k, v in kw.items():
        setattr(info, k, v)
    if data is None and info.type == tarfile.REGTYPE and not kw:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        return
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def _expected_files() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for i, word in enumerate(WORDS):
        for j, spk in enumerate(SPEAKERS):
            files[f"{word}/{spk}_nohash_0.wav"] = _wav_bytes(10 * i + j)
    files["_background_noise_/white_noise.wav"] = _wav_bytes(99, n=16000)
    files["_background_noise_/README.md"] = b"noise files\n"
    files["validation_list.txt"] = f"yes/{SPEAKERS[1]}_nohash_0.wav\n".encode()
    files["testing_list.txt"] = f"no/{SPEAKERS[2]}_nohash_0.wav\n".encode()
    # pad with incompressible bytes so a half-way drop leaves a meaningful .part
    files["LICENSE"] = np.random.default_rng(7).bytes(200_000)
    return files


def _make_archive(files: dict[str, bytes], prefix: str = "./", extra=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        if prefix == "./":
            _add(tar, ".")
        dirs = sorted({n.rsplit("/", 1)[0] for n in files if "/" in n})
        if prefix not in ("", "./"):
            _add(tar, prefix.rstrip("/"))
        for d in dirs:
            _add(tar, prefix + d)
        for name, data in files.items():
            _add(tar, prefix + name, data)
        if extra is not None:
            extra(tar)
    return buf.getvalue()


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return _expected_files()


@pytest.fixture(scope="module")
def archive(files) -> bytes:
    return _make_archive(files)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# the HTTP server
# --------------------------------------------------------------------------------------------


class _State:
    def __init__(self) -> None:
        self.body = b""
        self.mode = "range"  # range | norange | drop | drop_norange | corrupt
        self.requests: list[dict[str, str]] = []
        self.dropped = 0


class _Handler(BaseHTTPRequestHandler):
    state: _State  # set on a per-server subclass

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        st = self.state
        st.requests.append({k.lower(): v for k, v in self.headers.items()})
        body = st.body
        if st.mode == "corrupt":
            body = bytearray(body)
            body[len(body) // 2] ^= 0xFF
            body = bytes(body)
        if st.mode == "stall" and st.dropped == 0:
            # Send half, then go silent (the connection stays open): a read timeout.
            st.dropped += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(3.0)
            return
        if st.mode in ("drop", "drop_norange") and st.dropped == 0:
            # Promise everything, send half, then cut the connection.
            st.dropped += 1
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        rng = self.headers.get("Range")
        if rng and st.mode in ("range", "drop", "stall", "corrupt"):
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:])
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(archive):
    """A real HTTP server on 127.0.0.1; yields (base_url, state)."""
    state = _State()
    state.body = archive
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch):
    monkeypatch.setattr(dl, "_BACKOFF_S", 0.0)


def _leftovers(root: Path) -> list[str]:
    """Everything under root that a failed run must not leave behind."""
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _assert_dataset(target: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        assert (target / name).read_bytes() == data, name
    got = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert got == sorted([*files, dl._MARKER])


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def test_registry_entries_are_well_formed():
    assert {"speech_commands_v0.02", "speech_commands_test_set_v0.02"} <= set(dl.DATASETS)
    for key, info in dl.DATASETS.items():
        assert info.name == key
        assert len(info.sha256) == 64 and int(info.sha256, 16) >= 0
        assert info.url.endswith(f"/{key}.tar.gz")
        assert info.size is None or info.size > 1_000_000
    assert dl.DATASETS["speech_commands_test_set_v0.02"].size == 112_563_277


def test_clean_download_extract_and_instant_rerun(server, files, archive, tmp_path):
    base, st = server
    root = tmp_path / "data"  # does not exist yet
    url = f"{base}/speech_commands_v0.02.tar.gz"
    target = download_dataset("sc", root, url=url, sha256=_sha(archive), progress=True)
    assert target == root / "sc"
    _assert_dataset(target, files)
    marker = json.loads((target / dl._MARKER).read_text())
    assert marker["sha256"] == _sha(archive) and marker["url"] == url
    assert marker["files"] == len(files) and marker["date"]
    assert not (root / "sc.tar.gz").exists() and not (root / "sc.tar.gz.part").exists()
    assert sorted(p.name for p in root.iterdir()) == ["sc"]  # no temp dirs left
    assert len(st.requests) == 1 and "range" not in st.requests[0]

    # A second call touches no network at all, even with the server gone.
    before = len(st.requests)
    t0 = time.perf_counter()
    assert download_dataset("sc", root, url=url, sha256=_sha(archive), progress=False) == target
    assert time.perf_counter() - t0 < 1.0
    assert len(st.requests) == before


def test_name_defaults_to_archive_stem_and_keep_archive(server, archive, tmp_path):
    base, st = server
    target = download_dataset(
        root=tmp_path, url=f"{base}/lab_copy.tar.gz", sha256=_sha(archive).upper(),
        keep_archive=True, progress=False,
    )  # fmt: skip
    assert target == tmp_path / "lab_copy"
    assert (tmp_path / "lab_copy.tar.gz").read_bytes() == archive
    assert (target / "yes").is_dir()

    # The dataset folder is lost but the kept archive is there: re-extract without the network.
    shutil.rmtree(target)
    n = len(st.requests)
    download_dataset(
        root=tmp_path, url=f"{base}/lab_copy.tar.gz", sha256=_sha(archive), progress=False
    )
    assert len(st.requests) == n and (target / dl._MARKER).is_file()
    assert not (tmp_path / "lab_copy.tar.gz").exists()  # this time keep_archive=False


def test_dropped_connection_is_resumed_with_range(server, files, archive, tmp_path):
    base, st = server
    st.mode = "drop"
    target = download_dataset(
        "sc", tmp_path, url=f"{base}/sc.tar.gz", sha256=_sha(archive), progress=False
    )
    assert st.dropped == 1 and len(st.requests) == 2
    assert "range" not in st.requests[0]
    assert st.requests[1]["range"] == f"bytes={len(archive) // 2}-"
    _assert_dataset(target, files)


def test_server_without_range_support_restarts_and_completes(server, files, archive, tmp_path):
    base, st = server
    st.mode = "norange"
    # an interrupted earlier run left the first third of the archive behind
    part = tmp_path / "sc.tar.gz.part"
    part.write_bytes(archive[: len(archive) // 3])
    target = download_dataset(
        "sc", tmp_path, url=f"{base}/sc.tar.gz", sha256=_sha(archive), progress=False
    )
    assert st.requests[0]["range"] == f"bytes={len(archive) // 3}-"  # asked, got a 200
    _assert_dataset(target, files)
    assert not part.exists()


def test_drop_then_server_ignores_range(server, archive, tmp_path):
    """First request drops; the server then ignores Range: the .part restarts from zero."""
    base, st = server
    st.mode = "drop_norange"
    dest = tmp_path / "sub" / "f.bin"
    out = download_file(
        f"{base}/f.bin", dest, sha256=_sha(archive), size=len(archive), progress=False
    )
    assert out == dest and out.read_bytes() == archive
    assert len(st.requests) == 2 and st.requests[1]["range"] == f"bytes={len(archive) // 2}-"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"]


def test_part_already_complete_gets_416_and_verifies(server, archive, tmp_path):
    base, st = server
    dest = tmp_path / "a.tar.gz"
    Path(str(dest) + ".part").write_bytes(archive)
    # size unknown: the client must ask the server, which answers 416
    out = download_file(f"{base}/a.tar.gz", dest, sha256=_sha(archive), size=None, progress=False)
    assert out.read_bytes() == archive
    assert st.requests[0]["range"] == f"bytes={len(archive)}-"
    assert not Path(str(dest) + ".part").exists()


def test_corrupted_archive_is_rejected_and_nothing_is_left(server, archive, tmp_path):
    base, st = server
    st.mode = "corrupt"
    bad = bytearray(archive)
    bad[len(bad) // 2] ^= 0xFF
    root = tmp_path / "data"
    with pytest.raises(DownloadError) as exc:
        download_dataset("sc", root, url=f"{base}/sc.tar.gz", sha256=_sha(archive), progress=False)
    msg = str(exc.value)
    assert _sha(archive) in msg and _sha(bytes(bad)) in msg
    assert "mismatch" in msg.lower()
    assert _leftovers(root) == []
    assert not root.exists()


def test_member_escaping_the_target_is_refused(server, files, tmp_path):
    base, st = server
    evil = _make_archive(files, extra=lambda tar: _add(tar, "../evil", b"pwned\n"))
    st.body = evil
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match=r"\.\./evil"):
        download_dataset("sc", root, url=f"{base}/sc.tar.gz", sha256=_sha(evil), progress=False)
    assert _leftovers(root) == []
    assert not (tmp_path / "evil").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_verified_but_unreadable_archive_is_deleted(server, tmp_path):
    base, st = server
    st.body = b"this is not a tar.gz file\n" * 100
    with pytest.raises(DownloadError, match="corrupt or not a .tar.gz"):
        download_dataset(
            "sc", tmp_path / "d", url=f"{base}/sc.tar.gz", sha256=_sha(st.body), progress=False
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "extra, member",
    [
        (lambda t: _add(t, "/tmp/abs_evil", b"x"), "/tmp/abs_evil"),
        (lambda t: _add(t, "yes/../../evil2", b"x"), "yes/../../evil2"),
        (lambda t: _add(t, "yes/link", type=tarfile.SYMTYPE, linkname="../../x"), "yes/link"),
        (lambda t: _add(t, "yes/abs", type=tarfile.SYMTYPE, linkname="/etc/passwd"), "yes/abs"),
        (lambda t: _add(t, "hard", type=tarfile.LNKTYPE, linkname="../outside"), "hard"),
        (lambda t: _add(t, "fifo", type=tarfile.FIFOTYPE), "fifo"),
        (lambda t: _add(t, "dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3), "dev"),
    ],
)
def test_extract_archive_refuses_unsafe_members(files, tmp_path, extra, member):
    arc = tmp_path / "a.tar.gz"
    arc.write_bytes(_make_archive(files, extra=extra))
    target = tmp_path / "out" / "ds"
    with pytest.raises(DownloadError) as exc:
        extract_archive(arc, target)
    assert member in str(exc.value)
    assert not (tmp_path / "out").exists()  # no target, no temp dir, no created parent
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]


def test_extract_archive_flattens_single_top_folder_and_allows_inner_links(files, tmp_path):
    def extra(t):
        _add(t, "top/yes/alias.wav", type=tarfile.SYMTYPE, linkname=f"{SPEAKERS[0]}_nohash_0.wav")

    arc = tmp_path / "a.tar.gz"
    arc.write_bytes(_make_archive(files, prefix="top/", extra=extra))
    n = extract_archive(arc, tmp_path / "ds")
    assert n == len(files)  # symlinks are not counted as files
    assert (tmp_path / "ds" / "validation_list.txt").is_file()
    assert (tmp_path / "ds" / "yes" / "alias.wav").read_bytes() == files[
        f"yes/{SPEAKERS[0]}_nohash_0.wav"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "ds"]


def test_extract_archive_corrupt_gzip_leaves_nothing(archive, tmp_path):
    arc = tmp_path / "a.tar.gz"
    arc.write_bytes(archive[: len(archive) // 2])
    with pytest.raises(DownloadError, match="corrupt"):
        extract_archive(arc, tmp_path / "ds")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz"]


def test_download_file_bad_checksum_removes_part_and_new_folders(server, archive, tmp_path):
    base, st = server
    st.mode = "corrupt"
    dest = tmp_path / "new" / "deeper" / "f.bin"
    with pytest.raises(DownloadError, match="Checksum mismatch"):
        download_file(f"{base}/f.bin", dest, sha256=_sha(archive), size=None, progress=False)
    assert len(st.requests) == 1  # a bad checksum is not retried
    assert list(tmp_path.iterdir()) == []


def test_stalled_connection_times_out_and_resumes(server, archive, tmp_path):
    base, st = server
    st.mode = "stall"
    t0 = time.perf_counter()
    out = download_file(
        f"{base}/f.bin", tmp_path / "f.bin", sha256=_sha(archive), size=len(archive),
        timeout=0.3, progress=False,
    )  # fmt: skip
    assert time.perf_counter() - t0 < 2.5  # gave up on the silent server before it woke up
    assert out.read_bytes() == archive
    assert st.requests[1]["range"] == f"bytes={len(archive) // 2}-"


def test_connect_timeout_is_capped_and_reported(tmp_path, monkeypatch):
    seen = []

    def no_answer(address, timeout=None, *args, **kwargs):
        seen.append(timeout)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", no_answer)
    with pytest.raises(DownloadError, match=r"no answer from example\.invalid within 15 s"):
        download_file(
            "http://example.invalid/a.tar.gz", tmp_path / "d" / "a.tar.gz", sha256=None,
            size=None, timeout=30, progress=False,
        )  # fmt: skip
    assert seen == [15.0]  # one attempt, with the connect timeout, not the 30 s read timeout
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_fails_fast_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "_BACKOFF_S", 1.0)  # the real pause: retrying would be slow
    with socket.socket() as s:  # find a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "data"
    t0 = time.perf_counter()
    with pytest.raises(DownloadError) as exc:
        download_dataset(
            "sc", root, url=f"http://127.0.0.1:{port}/sc.tar.gz", sha256="0" * 64, progress=False
        )
    assert time.perf_counter() - t0 < 0.9  # no retries on a first connection that fails
    msg = str(exc.value)
    assert "127.0.0.1" in msg and "--url" in msg and "refused" in msg
    assert not root.exists()
    assert list(tmp_path.iterdir()) == []


def test_not_enough_disk_space_is_reported_before_downloading(
    server, archive, tmp_path, monkeypatch
):
    base, st = server
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(dl.shutil, "disk_usage", lambda p: usage._replace(free=1_000_000_000))
    root = tmp_path / "data"
    with pytest.raises(DownloadError) as exc:
        download_dataset("speech_commands_v0.02", root, progress=False)
    msg = str(exc.value)
    assert "disk" in msg and "1.00 GB" in msg and "needs 5.10 GB" in msg and "--root" in msg
    assert st.requests == [] and not root.exists()

    # a .part that is already there reduces what is needed
    root.mkdir()
    (root / "speech_commands_v0.02.tar.gz.part").write_bytes(b"\0" * 1000)
    with pytest.raises(DownloadError, match="already downloaded"):
        download_dataset("speech_commands_v0.02", root, progress=False)


def test_checksum_required_for_unknown_url_and_bad_names(tmp_path):
    with pytest.raises(DownloadError, match="--sha256"):
        download_dataset(root=tmp_path, url="http://127.0.0.1:9/other.tar.gz")
    with pytest.raises(DownloadError, match="Unknown dataset"):
        download_dataset("nope", tmp_path)
    with pytest.raises(DownloadError, match="64 hex"):
        download_dataset("sc", tmp_path, url="http://127.0.0.1:9/a.tar.gz", sha256="abc")
    assert list(tmp_path.iterdir()) == []
