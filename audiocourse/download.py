"""Resumable, checksum-verified dataset downloads and safe extraction (setup, notebook 05): a
dropped download resumes with an HTTP ``Range`` request, only a verified archive is kept, and
extraction refuses members that escape, then appears by one rename with a ``.complete`` marker."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import json
import os
import shutil
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
_MIRROR_HINT = "Check your connection (and proxy), or use a mirror: --url URL --sha256 HEX"
_ROOT_HINT = "--root DIR (or set $AUDIO_COURSE_DATA)"
_DEFAULT = "speech_commands_v0.02"
_gb = lambda n: f"{n / 1e9:.2f} GB"  # noqa: E731

_Archive = namedtuple("_Archive", "name url size sha256")
DATASETS: dict[str, _Archive] = {
    n: _Archive(n, f"http://download.tensorflow.org/data/{n}.tar.gz", size, sha256)
    # v0.02 (Warden 2018, CC BY 4.0: 105,829 clips of 35 words, split lists), its canonical
    # 12-class test set, and v0.01 (64,727 clips of 30 words; SHA-256 as pinned by torchaudio)
    for n, size, sha256 in [
        ("speech_commands_v0.02", 2_428_923_189,
         "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"),
        ("speech_commands_test_set_v0.02", 112_563_277,
         "cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df"),
        ("speech_commands_v0.01", 1_488_293_908,
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


def _check_disk(where: Path, needed: float, what: str) -> None:
    """Raise :class:`DownloadError` when the disk holding ``where`` has < ``needed`` bytes."""
    probe = Path(os.path.abspath(where))
    while not probe.exists():
        probe = probe.parent
    if (free := shutil.disk_usage(probe).free) < needed:
        raise DownloadError(f"Not enough free disk space in {probe}: {what} needs {_gb(needed)}, "
                            f"but only {_gb(free)} is free. Free some, or use {_ROOT_HINT}.")


def _mkdirs(path: Path) -> list[Path]:
    """``mkdir -p``; returns the folders it created (deepest last) so they can be undone."""
    created = [p for p in [path, *path.parents] if not p.exists()][::-1]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"Cannot create the folder {path}: {e}. Use {_ROOT_HINT}.") from e
    return created


def _rmdirs(created: list[Path]) -> None:
    with contextlib.suppress(OSError):
        for p in reversed(created):
            p.rmdir()


def _sha256_of(path: Path):
    """An incremental SHA-256 object fed with the whole file (so more bytes can follow)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h


def _verify(path: Path, sha256: str | None, size: int | None, delete: bool = False) -> bool:
    """True when ``path`` has the expected size and checksum; a bad one is deleted if asked."""
    ok = size in (None, path.stat().st_size) and sha256 in (None, _sha256_of(path).hexdigest())
    if not ok and delete:
        path.unlink(missing_ok=True)
    return ok


def _connect(url: str, part: Path, have: int, sha256: str | None, size: int | None,
             timeout: float, first: bool):
    """The response for bytes ``have``-, or ``None`` when the server says ``part`` is complete
    (416) and it verifies. A first contact that fails raises at once: retrying would not help."""
    headers = {"User-Agent": "audio-course/1.0", "Accept-Encoding": "identity"}
    headers.update({"Range": f"bytes={have}-"} if have > 0 else {})
    try:
        req = urllib.request.Request(url, headers=headers)
        resp = urllib.request.urlopen(req, timeout=min(timeout, _CONNECT_TIMEOUT_S))  # noqa: S310
        if hasattr(resp, "fp") and hasattr(resp.fp, "raw"):  # connected: now each read may
            resp.fp.raw._sock.settimeout(timeout)  # take ``timeout`` (file:// has no socket)
        return resp
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and have > 0 and _verify(part, sha256, size, delete=True):
            return None  # nothing after byte `have`: it was complete (a bad one is deleted)
        if e.code == 416 or e.code >= 500 or e.code in (408, 429):
            raise _RetryableError(f"HTTP {e.code} {e.reason}") from e
        raise DownloadError(f"Download failed: HTTP {e.code} {e.reason} for {url}. Check "
                            "the URL, or use a mirror with --url URL --sha256 HEX.") from e
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        host = urllib.parse.urlsplit(url).hostname or url  # DNS, refused, timed out, TLS...
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        if isinstance(reason, TimeoutError):
            reason = f"no answer from {host} within {min(timeout, _CONNECT_TIMEOUT_S):.0f} s"
        message = f"Network error: cannot reach {host} to download {url}: {reason}. {_MIRROR_HINT}"
        raise (DownloadError if first else _RetryableError)(message) from e


def _receive(resp, part: Path, have: int, h, bar: tqdm) -> int:
    """Append the body of ``resp`` to ``part`` (at byte ``have``) and ``h``; returns the size."""
    read = getattr(resp, "read1", resp.read)  # read1: what has arrived, so a drop loses nothing
    with open(part, "ab" if have else "wb") as f:
        while True:
            try:
                chunk = read(1 << 20)
            except (OSError, http.client.HTTPException) as e:
                raise _RetryableError(f"connection lost after {_gb(have)}: {e}") from e
            if not chunk:
                return have
            try:
                f.write(chunk)
            except OSError as e:
                raise DownloadError(f"Cannot write {part} ({e}) after {_gb(have)}: free some "
                                    "space and run again; it resumes from there.") from e
            h.update(chunk)
            have += len(chunk)
            bar.update(len(chunk))


def _attempt(url: str, part: Path, sha256: str | None, size: int | None, bar: tqdm,
             timeout: float, first: bool) -> None:
    """One request that appends to ``part`` (206) or restarts it (200), then verifies it."""
    have = part.stat().st_size if part.exists() else 0
    have = 0 if size is not None and have > size else have  # cannot be right: start over
    resp = _connect(url, part, have, sha256, size, timeout, first)
    if resp is None:
        return
    with resp:
        status = getattr(resp, "status", None) or 200  # None: file:// URL
        length = int(resp.headers.get("Content-Length") or -1)
        span = resp.headers.get("Content-Range") or ""
        if status == 206 and not span.startswith(f"bytes {have}-"):  # not what we asked for
            part.unlink(missing_ok=True)
            raise _RetryableError("server answered an unexpected range; restarting")
        if status not in (200, 206):
            raise DownloadError(f"Unexpected HTTP status {status} from {url}.")
        have = have if status == 206 else 0  # 200: the whole body, the server ignores Range
        total = size if length < 0 else length + have
        if None not in (size, total) and total != size:
            raise DownloadError(f"The server says {url} is {total:,} bytes, not {size:,}: wrong "
                                "URL, or another version of the archive? Nothing was kept.")
        h = _sha256_of(part) if have else hashlib.sha256()  # then the appended bytes
        if size is None and total is not None:  # the first time we learn the size
            _check_disk(part.parent, total - have, f"downloading {part.name}")
        bar.reset(total)
        bar.update(have)
        got = _receive(resp, part, have, h, bar)
    if total is not None and got < total:
        raise _RetryableError(f"connection closed after {_gb(got)} of {_gb(total)}")
    if got != (total or got) or got != (size or got):
        part.unlink()
        raise DownloadError(f"Received {got:,} bytes from {url}, expected {total or size:,}; "
                            "the partial file was deleted. Run the command again.")
    if sha256 not in (None, h.hexdigest()):
        part.unlink()
        raise DownloadError(f"Checksum mismatch for {url}: expected sha256 {sha256}, got "
                            f"{h.hexdigest()}; the file was deleted (a mirror needs its --sha256).")


def _download_file(url: str, dest: str | Path, *, sha256: str | None, size: int | None,
                   progress: bool = True, timeout: float = 30, retries: int = 3) -> Path:
    """Download ``url`` to ``dest`` via ``dest.part``, resuming a dropped connection ``retries``
    times (``Range``: 206 appends, 200 restarts, 416 complete); only verified bytes are kept."""
    dest, sha256 = Path(dest), sha256.lower() if sha256 else None
    if not urllib.parse.urlsplit(url).scheme and os.path.exists(url):
        url = Path(url).resolve().as_uri()  # a plain local path (lab copy)
    part = dest.with_name(dest.name + ".part")
    if dest.exists() and _verify(dest, sha256, size, delete=True):  # keep_archive's copy
        return dest
    created = _mkdirs(dest.parent)
    bar = tqdm(total=size, unit="B", unit_scale=True, desc=dest.name, disable=not progress)
    try:
        for attempt in range(retries + 1):
            try:
                if not (size and part.exists() and part.stat().st_size == size
                        and _verify(part, sha256, size, delete=True)):  # else: no network
                    _attempt(url, part, sha256, size, bar, float(timeout), first=attempt == 0)
                os.replace(part, dest)
                return dest
            except _RetryableError as e:
                if attempt == retries:
                    kept = f" {part} was kept: run again to resume." * part.exists()
                    raise DownloadError(f"Download of {url} failed after {retries} retries: "
                                        f"{e}.{kept} {_MIRROR_HINT}") from e
                bar.write(f"{e}; retrying ({attempt + 1}/{retries})")
                time.sleep(min(_BACKOFF_S * 2**attempt, 10.0))
    except BaseException:
        if part.exists() and part.stat().st_size == 0:  # keep a non-empty .part: resumable
            part.unlink()
        _rmdirs(created)
        raise
    finally:
        bar.close()


def _safe_name(m: tarfile.TarInfo) -> str | None:
    """A member's normalised relative name (``None`` for the root '.'), or refuse it."""
    name, link = m.name.replace("\\", "/"), m.linkname.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
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
    n_files, kw = 0, {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:  # the "data" filter (Python >= 3.10.12) refuses whatever _safe_name missed
        with tarfile.open(archive, "r:*") as tar:
            for m in tar:
                if (rel := _safe_name(m)) is not None:
                    m.name = rel
                    tar.extract(m, tmp, **kw)
                    n_files += m.isfile() or m.islnk()
    except tarfile.FilterError as e:
        raise _BadArchiveError(f"Refusing to extract from {archive}: {e}") from e
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise _BadArchiveError(f"Cannot extract {archive} ({type(e).__name__}: {e}): it is corrupt "
                               "or not a .tar.gz; it is deleted, download it again.") from e
    except OSError as e:  # a local problem (disk full, permissions): the archive is fine
        raise DownloadError(f"Extracting {archive.name} failed: {e}. Free some space (or use "
                            f"{_ROOT_HINT}) and run again; the verified archive is reused.") from e
    return n_files


def _extract_archive(archive: str | Path, target: str | Path, marker: dict | None = None) -> int:
    """Extract a ``.tar.gz`` into a hidden sibling of ``target``, refusing unsafe members, then
    rename it into place (a single top folder is flattened); returns the number of files."""
    archive, target = Path(archive), Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DownloadError(f"{target} exists and is not empty: delete it or use another --root.")
    created = _mkdirs(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        n_files = _extract_members(archive, tmp)
        entries, content = list(tmp.iterdir()), tmp
        if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
            content = entries[0]  # an archive with a single top folder: flatten it
        if marker is not None:
            (content / _MARKER).write_text(json.dumps({**marker, "files": n_files}, indent=2))
        if target.exists():
            target.rmdir()  # empty (checked above)
        os.replace(content, target)
        shutil.rmtree(tmp, ignore_errors=True)
        return n_files
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _rmdirs(created)
        raise


def _resolve(name: str | None, url: str | None, sha256: str | None, size: int | None) -> _Archive:
    """The archive to fetch: a registry entry, or ``url`` + ``sha256`` (a mirror, a lab copy)."""
    sha256 = sha256.strip().lower() if sha256 else None
    if sha256 and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256)):
        raise DownloadError(f"--sha256 must be 64 hex digits, got {sha256!r}.")
    if url is None and (name or _DEFAULT) not in DATASETS:
        raise DownloadError(f"Unknown dataset {name!r}. Known: {', '.join(DATASETS)}; or give "
                            "--url URL --sha256 HEX for an archive in the same layout.")
    stem = Path(urllib.parse.unquote(urllib.parse.urlsplit(url or "").path)).name
    name = name or stem.removesuffix(".gz").removesuffix(".tar").removesuffix(".tgz") or _DEFAULT
    known = DATASETS.get(name)
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise DownloadError(f"Invalid dataset name {name!r}: use a plain folder name.")
    if sha256 is None and known is None:
        raise DownloadError(f"No checksum for {url}: pass --sha256 HEX (print it with "
                            "`sha256sum FILE`) so the download can be verified.")
    if known is not None and sha256 in (None, known.sha256):
        return _Archive(name, url or known.url, size or known.size, known.sha256)
    if url is None:
        raise DownloadError(f"--sha256 {sha256} is not the registry's for {name}: pass --url.")
    return _Archive(name, url, size, sha256)


def download_dataset(name: str | None = None, root: str | Path | None = None, *,
                     url: str | None = None, sha256: str | None = None, size: int | None = None,
                     keep_archive: bool = False, progress: bool = True) -> Path:
    """Download, verify and extract a dataset into ``root/<name>/``; returns it (notebook 05).

    ``name``: a key of ``DATASETS`` (default v0.02), or ``url`` + ``sha256`` of a mirror in the
    same layout. ``root``: ``data_dir()``. A second call returns at once, offline."""
    info = _resolve(name, url, sha256, size)
    root = Path(root or data_dir()).expanduser()
    target, root_existed = root / info.name, root.exists()
    with contextlib.suppress(OSError, ValueError):
        done = json.loads((target / _MARKER).read_text())
        if done.get("sha256") not in (None, info.sha256):
            raise DownloadError(f"{target} holds another archive (sha256 {done.get('sha256')}, "
                                f"from {done.get('url')}): delete it or use another --root.")
        print(f"{info.name}: already downloaded in {target} ({done.get('files', '?')} files)")
        return target
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DownloadError(f"{target} exists but has no {_MARKER} marker (an interrupted or "
                            "manual copy?): delete it, or point DATASET at that folder.")
    archive = root / f"{info.name}.tar.gz"
    part = archive.with_name(archive.name + ".part")
    try:
        if info.size is not None:  # room for what is still missing plus the extracted files?
            have = archive.stat().st_size if archive.exists() else 0
            have = have or (min(part.stat().st_size, info.size) if part.exists() else 0)
            unpacked = _EXTRACT_FACTOR * info.size
            _check_disk(root, info.size - have + unpacked, f"{info.name} ({_gb(info.size)} + "
                        f"~{_gb(unpacked)} extracted, {_gb(have)} already downloaded)")
        print(f"Downloading {info.name} ({_gb(info.size or 0)}) from {info.url}\n  to {archive}")
        _download_file(info.url, archive, sha256=info.sha256, size=info.size, progress=progress)
        if info.size is None:  # now we know how big the archive is
            _check_disk(root, _EXTRACT_FACTOR * archive.stat().st_size, f"extracting {info.name}")
        for stale in root.glob(f".{info.name}.tmp-*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        print(f"Extracting {archive.name} into {target} ...")
        meta = {**info._asdict(), "size": archive.stat().st_size,
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
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
