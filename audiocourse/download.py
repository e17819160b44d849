"""Resumable, checksum-verified dataset downloads and safe archive extraction (setup, notebook 05).

The archive streams into ``<archive>.part``; a dropped connection is resumed with an HTTP
``Range`` request (also by a later run). Size and SHA-256 are checked before the rename, so a
finished archive is a verified one. Extraction goes into a hidden folder beside the target,
refuses members that would land outside it and is renamed into place when complete; a
``.complete`` marker makes the next call instant. Every failure is a :class:`DownloadError`.
"""

from __future__ import annotations

import datetime as _dt
import errno
import gzip
import hashlib
import http.client
import json
import os
import shutil
import socket
import ssl
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections import namedtuple
from pathlib import Path

from tqdm.auto import tqdm

from .env import data_dir

__all__ = ["DATASETS", "DownloadError", "download_dataset"]

_MARKER = ".complete"  # JSON file that marks a fully extracted dataset folder
_CONNECT_TIMEOUT_S = 15.0  # cap for opening a connection; ``timeout`` then applies to each read
_BACKOFF_S = 1.0  # first pause before a retry; doubles each time, at most 10 s (tests: 0)
_EXTRACT_FACTOR = 1.1  # extracted size / archive size (WAV audio barely compresses)
_MIRROR_HINT = (
    "Check your internet connection (and proxy settings), or download from a mirror: "
    "python utils.py download --url URL --sha256 HEX"
)
_ROOT_HINT = "--root DIR (or set $AUDIO_COURSE_DATA)"

_Archive = namedtuple("_Archive", "name url size sha256")
_BASE = "http://download.tensorflow.org/data/"
DATASETS: dict[str, _Archive] = {
    a.name: a
    for a in [
        # v0.02 (Warden 2018, CC BY 4.0): 105,829 clips of 35 words + noise, with split lists
        _Archive("speech_commands_v0.02", f"{_BASE}speech_commands_v0.02.tar.gz", 2_428_923_189,
                 "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"),
        # the canonical v0.02 12-class test set (10 words, _unknown_, _silence_)
        _Archive("speech_commands_test_set_v0.02",
                 f"{_BASE}speech_commands_test_set_v0.02.tar.gz", 112_563_277,
                 "cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df"),
        # v0.01 (2017): 64,727 clips of 30 words; SHA-256 as pinned by torchaudio
        _Archive("speech_commands_v0.01", f"{_BASE}speech_commands_v0.01.tar.gz", 1_488_293_908,
                 "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d"),
    ]
}
"""The downloadable archives by name: URL, size and SHA-256 (setup, notebook 05)."""


class DownloadError(RuntimeError):
    """A download, verification or extraction failed; the message says what to do (setup)."""


class _BadArchiveError(DownloadError):
    """The archive itself is unusable (corrupt or unsafe): keeping it would not help."""


class _RetryableError(Exception):
    """This attempt failed in a way worth retrying (dropped connection, 5xx)."""


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _check_disk(where: Path, needed: float, what: str) -> None:
    """Raise :class:`DownloadError` when the disk holding ``where`` has < ``needed`` bytes."""
    probe = Path(os.path.abspath(where))
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:  # cannot tell (odd file system): let the write itself fail later
        return
    if free < needed:
        raise DownloadError(
            f"Not enough free disk space in {probe}: {what} needs {_gb(needed)}, but only "
            f"{_gb(free)} is free. Free some space, or use a bigger disk with {_ROOT_HINT}."
        )


def _mkdirs(path: Path) -> list[Path]:
    """``mkdir -p``; returns the folders it created (deepest last) so they can be undone."""
    created, p = [], Path(path)
    while not p.exists() and p != p.parent:
        created.insert(0, p)
        p = p.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"Cannot create the folder {path}: {e}. Use {_ROOT_HINT}.") from e
    return created


def _rmdirs(created: list[Path]) -> None:
    """Remove folders made by :func:`_mkdirs` again, if they are still empty."""
    for p in reversed(created):
        try:
            p.rmdir()
        except OSError:
            break


def _sha256_of(path: Path):
    """An incremental SHA-256 object fed with the whole file (so more bytes can follow)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h


def _verify(path: Path, sha256: str | None, size: int | None, delete: bool = False) -> bool:
    """True when ``path`` has the expected size and checksum; a bad one is deleted if asked."""
    ok = (size is None or path.stat().st_size == size) and (
        sha256 is None or _sha256_of(path).hexdigest() == sha256
    )
    if not ok and delete:
        path.unlink(missing_ok=True)
    return ok


def _network_message(url: str, exc: BaseException, timeout: float) -> str:
    """Turn a urllib/socket exception into one actionable sentence naming the host."""
    host = urllib.parse.urlsplit(url).hostname or url
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (
            f"Cannot download {url}: the TLS certificate of {host} could not be verified "
            f"({reason}). Update your CA certificates (`pip install -U certifi`; on macOS run "
            "'Install Certificates.command'), or use a mirror: --url URL --sha256 HEX"
        )
    if isinstance(reason, socket.gaierror):
        detail = f"the host name {host!r} could not be resolved (no DNS / offline?): {reason}"
    elif isinstance(reason, ConnectionRefusedError):
        detail = f"the connection to {host} was refused: {reason}"
    elif isinstance(reason, TimeoutError):
        detail = f"no answer from {host} within {timeout:.0f} s (timed out)"
    else:
        detail = f"{type(reason).__name__}: {reason}"
    return f"Network error: cannot reach {host} to download {url}: {detail}. {_MIRROR_HINT}"


def _open(url: str, start: int, timeout: float) -> http.client.HTTPResponse:
    """Open ``url``, asking for bytes ``start``- when resuming; ``timeout`` applies to reads."""
    headers = {"User-Agent": "audio-course-downloader/1.0", "Accept-Encoding": "identity"}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
    req = urllib.request.Request(url, headers=headers)
    resp = urllib.request.urlopen(req, timeout=min(timeout, _CONNECT_TIMEOUT_S))  # noqa: S310
    try:  # connected: from now on each read may take up to ``timeout``
        resp.fp.raw._sock.settimeout(timeout)
    except AttributeError:  # not a plain socket response (e.g. file://)
        pass
    return resp


def _start_stream(resp, part: Path, have: int, size: int | None, url: str):
    """Append (206) or restart from zero (200)? Returns ``(hasher or None, total or None)``;
    no hasher means "restart". A size that contradicts ``size`` raises :class:`DownloadError`."""
    status = getattr(resp, "status", None) or resp.getcode() or 200  # None: file:// URL
    length = resp.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if status == 206 and have > 0:
        span, _, total = (resp.headers.get("Content-Range") or "").removeprefix("bytes ").partition("/")
        if span.split("-")[0].strip() != str(have):  # a range we did not ask for: start over
            part.unlink(missing_ok=True)
            raise _RetryableError(f"server answered an unexpected range {span!r}; restarting")
        total = int(total) if total.strip().isdigit() else have + length if length else size
        hasher = _sha256_of(part)  # what we have, then the appended bytes
    elif status == 200 or status == 206:  # the whole body: the server ignores Range
        total, hasher = length if length is not None else size, None
    else:
        raise DownloadError(f"Unexpected HTTP status {status} from {url}.")
    if size is not None and total is not None and total != size:
        raise DownloadError(
            f"The server says {url} is {total:,} bytes, but {size:,} bytes were expected: wrong "
            "URL, or a different version of the archive? Nothing was kept."
        )
    return hasher, total


def _connect(url: str, part: Path, have: int, sha256: str | None, size: int | None,
             timeout: float, first: bool):
    """The response for bytes ``have``-, or ``None`` when the server says ``part`` is complete
    (416) and it verifies. A first contact that fails raises at once: retrying would not help."""
    try:
        return _open(url, have, timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and have > 0:  # nothing after byte `have`: complete?
            if _verify(part, sha256, size, delete=True):
                return None
            raise _RetryableError("the complete partial file did not verify; restarting") from e
        if e.code >= 500 or e.code in (408, 429):
            raise _RetryableError(f"HTTP {e.code} {e.reason}") from e
        hint = " (wrong URL?)" if e.code in (403, 404, 410) else ""
        raise DownloadError(
            f"Download failed: the server answered HTTP {e.code} {e.reason} for {url}{hint}. "
            "Check the URL, or use a mirror with --url URL --sha256 HEX."
        ) from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        message = _network_message(url, e, min(timeout, _CONNECT_TIMEOUT_S))
        raise (DownloadError if first else _RetryableError)(message) from e


def _attempt(url: str, part: Path, sha256: str | None, size: int | None, bar: tqdm,
             timeout: float, first: bool) -> None:
    """One request that appends to (or restarts) ``part`` until it is complete and verified."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:  # cannot be right: start over
        part.unlink()
        have = 0
    resp = _connect(url, part, have, sha256, size, timeout, first)
    if resp is None:
        return
    with resp:
        h, total = _start_stream(resp, part, have, size, url)
        if h is None:
            h, have = hashlib.sha256(), 0
        if size is None and total is not None:  # the first time we learn the size
            _check_disk(part.parent, total - have, f"downloading {part.name}")
        bar.reset(total)
        bar.update(have)
        got, read = have, getattr(resp, "read1", resp.read)  # read1: what has arrived so far
        with open(part, "ab" if have else "wb") as f:
            while True:
                try:
                    chunk = read(1 << 20)
                except (OSError, http.client.HTTPException) as e:
                    raise _RetryableError(f"connection lost after {_gb(got)}: {e}") from e
                if not chunk:
                    break
                try:
                    f.write(chunk)
                except OSError as e:
                    raise DownloadError(
                        ("The disk is full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else
                         f"Cannot write ({e})") + f" while writing {part} ({_gb(got)} so far). "
                        "Fix that and run the same command again: it resumes where it stopped."
                    ) from e
                h.update(chunk)
                got += len(chunk)
                bar.update(len(chunk))
    if total is not None and got < total:
        raise _RetryableError(f"connection closed after {_gb(got)} of {_gb(total)}")
    if (total is not None and got > total) or (size is not None and got != size):
        part.unlink()
        raise DownloadError(f"Received {got:,} bytes from {url}, expected {total or size:,}; "
                            "the partial file was deleted. Run the command again.")
    if sha256 is not None and h.hexdigest() != sha256:
        part.unlink()
        raise DownloadError(
            f"Checksum mismatch for {url}: expected sha256 {sha256}, got {h.hexdigest()}. The "
            "downloaded file was deleted. A mirror must hold the same archive (or pass its "
            "own --sha256)."
        )


def _download_file(url: str, dest: str | Path, *, sha256: str | None, size: int | None,
                   progress: bool = True, timeout: float = 30, retries: int = 3) -> Path:
    """Download ``url`` to ``dest``: resumable, size- and SHA-256-verified, atomic.

    Bytes stream into ``dest.part``; a dropped connection is retried ``retries`` times with
    ``Range: bytes=N-`` (206 appends, 200 restarts, 416 means complete). Only a verified
    ``.part`` becomes ``dest``. An unreachable host fails at once, creating nothing.
    """
    dest = Path(dest)
    if not urllib.parse.urlsplit(url).scheme and os.path.exists(url):
        url = Path(url).resolve().as_uri()  # a plain local path (lab copy)
    part, sha256 = dest.with_name(dest.name + ".part"), sha256.lower() if sha256 else None
    if dest.exists():  # finished earlier (keep_archive): trust it only if it verifies
        if _verify(dest, sha256, size):
            return dest
        dest.unlink()
    created = _mkdirs(dest.parent)
    bar = tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
               disable=not progress)
    try:
        for attempt in range(retries + 1):
            try:
                if not (size and part.exists() and part.stat().st_size == size
                        and _verify(part, sha256, size, delete=True)):
                    _attempt(url, part, sha256, size, bar, float(timeout), first=attempt == 0)
                os.replace(part, dest)
                return dest
            except _RetryableError as e:
                if attempt == retries:
                    kept = part.exists() and part.stat().st_size > 0
                    resume = f" The partial file {part} was kept: run again to resume." * kept
                    raise DownloadError(f"Download of {url} failed after {retries} retries: "
                                        f"{e}.{resume} {_MIRROR_HINT}") from e
                pause = min(_BACKOFF_S * 2**attempt, 10.0)
                bar.write(f"{e}; retrying in {pause:.0f} s ({attempt + 1}/{retries})")
                time.sleep(pause)
    except BaseException:
        if part.exists() and part.stat().st_size == 0:  # keep a non-empty .part: resumable
            part.unlink()
        _rmdirs(created)
        raise
    finally:
        bar.close()
    raise AssertionError("unreachable")  # pragma: no cover


def _safe_name(m: tarfile.TarInfo) -> str | None:
    """A member's normalised relative name (``None`` for the root '.'), or refuse it."""
    name = m.name.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    link = m.linkname.replace("\\", "/")
    depth = len(parts) - 1 if m.issym() else 0  # hard links are relative to the archive root
    for p in link.split("/") if m.issym() or m.islnk() else []:
        depth += -1 if p == ".." else p not in ("", ".")
        link = "/" if depth < 0 else link  # a link that climbs out counts as absolute
    if name.startswith("/") or name[1:2] == ":":
        why = "absolute path in the archive"
    elif ".." in parts:
        why = "it would escape the target"
    elif not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
        why = "special file (device/fifo)"
    elif (m.issym() or m.islnk()) and link.startswith("/"):
        why = f"link {m.linkname!r} points outside the target"
    elif not parts and not m.isdir():
        why = "empty member name"
    else:
        return "/".join(parts) or None
    raise _BadArchiveError(f"Refusing to extract {m.name!r}: {why}.")


def _extract_members(archive: Path, tmp: Path) -> int:
    """Every safe member of ``archive`` into ``tmp`` in one pass; returns the number of files."""
    n_files = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for m in tar:
                if (rel := _safe_name(m)) is not None:
                    m.name = rel
                    try:
                        tar.extract(m, tmp, filter="data")
                    except tarfile.FilterError as e:
                        raise _BadArchiveError(f"Refusing to extract {rel!r}: {e}") from e
                    n_files += m.isfile() or m.islnk()
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise _BadArchiveError(
            f"Cannot extract {archive}: {type(e).__name__}: {e}. The archive is corrupt or not "
            "a .tar.gz; delete it and download it again."
        ) from e
    except OSError as e:  # a local problem (disk full, permissions): the archive is fine
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        raise DownloadError(
            f"{'The disk filled up' if full else 'A file system error occurred'} while "
            f"extracting {archive.name}: {e}. Fix that (or use {_ROOT_HINT}) and run again; "
            "the verified archive is reused."
        ) from e
    return n_files


def _extract_archive(archive: str | Path, target: str | Path, marker: dict | None = None) -> int:
    """Safely extract a ``.tar.gz`` into ``target``; returns the number of files.

    Members go into a hidden sibling folder first (unsafe ones raise :class:`DownloadError`);
    a single top folder is flattened; ``target`` appears by one rename when all went well.
    """
    archive, target = Path(archive), Path(target)
    if target.exists():
        if not target.is_dir() or any(target.iterdir()):
            raise DownloadError(f"{target} exists and is not empty; delete it (or choose "
                                "another --root) and run again.")
        target.rmdir()
    created = _mkdirs(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        n_files = _extract_members(archive, tmp)
        entries = list(tmp.iterdir())
        content = tmp
        if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
            content = entries[0]  # an archive with a single top folder: flatten it
        if marker is not None:
            (content / _MARKER).write_text(json.dumps({**marker, "files": n_files}, indent=2))
        os.replace(content, target)
        shutil.rmtree(tmp, ignore_errors=True)
        return n_files
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _rmdirs(created)
        raise


def _resolve(name: str | None, url: str | None, sha256: str | None, size: int | None) -> _Archive:
    """The archive to fetch: a registry entry, or ``url`` + ``sha256`` (a mirror, a lab copy)."""
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise DownloadError(f"--sha256 must be 64 hex digits, got {sha256!r}.")
    if url is None:
        info = DATASETS.get(name or "speech_commands_v0.02")
        if info is None:
            raise DownloadError(f"Unknown dataset {name!r}. Known: {', '.join(DATASETS)}; or "
                                "give --url URL --sha256 HEX for an archive in the same layout.")
        if sha256 not in (None, info.sha256):
            raise DownloadError(f"--sha256 {sha256} differs from the registry's {info.sha256} "
                                f"for {info.name}; pass --url to download another archive.")
        return info
    stem = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    name = name or stem.removesuffix(".gz").removesuffix(".tar").removesuffix(".tgz")
    known = DATASETS.get(name)
    if sha256 is None and known is None:
        raise DownloadError(f"No checksum for {url}: pass --sha256 HEX (print it with "
                            "`sha256sum FILE`) so the download can be verified.")
    if known is not None and sha256 in (None, known.sha256) and size is None:
        size = known.size
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise DownloadError(f"Invalid dataset name {name!r}: use a plain folder name.")
    return _Archive(name, url, size, sha256 or known.sha256)


def _done(target: Path, info: _Archive) -> bool:
    """True when ``target`` holds this archive, extracted; raises if it holds something else."""
    try:
        done = json.loads((target / _MARKER).read_text())
    except (OSError, ValueError):
        done = None
    if done is not None and done.get("sha256") in (None, info.sha256):
        print(f"{info.name}: already downloaded in {target} ({done.get('files', '?')} files)")
        return True
    if done is not None:
        raise DownloadError(f"{target} holds another archive (sha256 {done.get('sha256')}, "
                            f"from {done.get('url')}): delete it or use another --root.")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DownloadError(f"{target} exists but has no {_MARKER} marker (an interrupted or "
                            "manual copy?): delete it, or point DATASET at that folder.")
    return False


def download_dataset(
    name: str | None = None,
    root: str | Path | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    size: int | None = None,
    keep_archive: bool = False,
    progress: bool = True,
) -> Path:
    """Download, verify and extract a dataset into ``root/<name>/``; returns it (notebook 05).

    ``name`` is a key of ``DATASETS`` (default ``speech_commands_v0.02``), or give ``url`` +
    ``sha256`` for a mirror or lab copy in the same layout (``name`` defaults to the archive's
    stem). ``root`` defaults to ``data_dir()``. A second call returns at once (no network).
    The archive is deleted after extraction unless ``keep_archive``.
    """
    info = _resolve(name, url, sha256, size)
    root = Path(root or data_dir()).expanduser()
    target, archive = root / info.name, root / f"{info.name}.tar.gz"
    if _done(target, info):
        return target
    part, root_existed = archive.with_name(archive.name + ".part"), root.exists()
    try:
        if info.size is not None:  # room for what is still missing plus the extracted files?
            have = archive.stat().st_size if archive.exists() else 0
            have = have or (min(part.stat().st_size, info.size) if part.exists() else 0)
            _check_disk(root, info.size - have + _EXTRACT_FACTOR * info.size,
                        f"{info.name} (archive {_gb(info.size)} + ~{_gb(_EXTRACT_FACTOR * info.size)}"
                        f" extracted, {_gb(have)} already downloaded)")
        size_txt = _gb(info.size) if info.size else "unknown size"
        print(f"Downloading {info.name} ({size_txt}) from {info.url}\n  to {archive}")
        _download_file(info.url, archive, sha256=info.sha256, size=info.size, progress=progress)
        n_bytes = archive.stat().st_size
        if info.size is None:  # now we know how big the archive is
            _check_disk(root, _EXTRACT_FACTOR * n_bytes, f"extracting {info.name}")
        for stale in root.glob(f".{info.name}.tmp-*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        print(f"Extracting {archive.name} into {target} ...")
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        meta = {"name": info.name, "url": info.url, "sha256": info.sha256, "size": n_bytes,
                "date": now}
        try:
            n = _extract_archive(archive, target, marker=meta)
        except _BadArchiveError:
            archive.unlink(missing_ok=True)  # verified but unusable: no point keeping it
            raise
        if not keep_archive:
            archive.unlink(missing_ok=True)
        print(f"Done: {n:,} files in {target}")
        return target
    except BaseException:
        if not root_existed:  # leave no empty folder behind when nothing was kept
            _rmdirs([root])
        raise
