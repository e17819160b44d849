"""Resumable, checksum-verified dataset downloads and safe archive extraction (setup, notebook 05).

Only the standard library (``urllib``, ``tarfile``, ``hashlib``) and ``tqdm`` are used, so the
downloader works in a bare Colab runtime as well as on a laptop:

* the archive streams into ``<archive>.part``; a dropped connection is retried and *resumed*
  with an HTTP ``Range`` request, and a later run resumes a ``.part`` left by an interrupted one;
* size and SHA-256 are checked before the ``.part`` is renamed, so a finished archive is always
  a verified one;
* extraction goes into a hidden temporary folder next to the target, refuses members that would
  land outside it, and is renamed into place only when complete;
* a ``.complete`` JSON marker in the dataset folder makes a second call instant (no network).

Every failure raises :class:`DownloadError` with a message that says what to do next.
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
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

__all__ = [
    "DatasetInfo",
    "DATASETS",
    "DEFAULT_DATASET",
    "DownloadError",
    "download_file",
    "extract_archive",
    "download_dataset",
]

MARKER = ".complete"
"""Name of the JSON file that marks a fully extracted dataset folder."""

CONNECT_TIMEOUT_S = 15.0
"""Upper bound for opening a connection; ``timeout`` then applies to each read."""

RETRY_BACKOFF_S = 1.0
"""First pause before a retry; doubles each time (capped at 10 s). Tests set it to 0."""

EXTRACT_FACTOR = 1.1
"""Extracted size as a multiple of the archive size (WAV audio barely compresses)."""

_USER_AGENT = "audio-course-downloader/1.0 (+python-urllib)"
_MIRROR_HINT = (
    "Check your internet connection (and proxy settings), or download from a mirror: "
    "python utils.py download --url URL --sha256 HEX"
)


@dataclass(frozen=True)
class DatasetInfo:
    """One downloadable archive: where it lives, how big it is and its SHA-256 (setup)."""

    name: str
    url: str
    size: int | None
    sha256: str
    description: str = ""


DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in [
        DatasetInfo(
            name="speech_commands_v0.02",
            url="http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
            size=2_428_923_189,
            sha256="af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
            description="Speech Commands v0.02 (Warden 2018, CC BY 4.0): 105,829 one-second "
            "clips of 35 words + background noise, with validation/testing lists.",
        ),
        DatasetInfo(
            name="speech_commands_test_set_v0.02",
            url="http://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz",
            size=112_563_277,
            sha256="cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df",
            description="The canonical v0.02 12-class test set (10 words, _unknown_, "
            "_silence_; CC BY 4.0).",
        ),
        # v0.01: SHA-256 as pinned in torchaudio's SPEECHCOMMANDS dataset; size as reported by
        # TensorFlow's speech_commands example when it downloaded the archive.
        DatasetInfo(
            name="speech_commands_v0.01",
            url="http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz",
            size=1_488_293_908,
            sha256="743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
            description="Speech Commands v0.01 (2017, CC BY 4.0): 64,727 clips of 30 words.",
        ),
    ]
}

DEFAULT_DATASET = "speech_commands_v0.02"
"""The dataset downloaded when no name and no URL are given (notebook 05)."""


class DownloadError(RuntimeError):
    """A download, verification or extraction failed; the message says what to do (setup)."""


class _BadArchiveError(DownloadError):
    """The archive itself is unusable (corrupt or unsafe): keeping it would not help."""


class _RetryableError(Exception):
    """Internal: this attempt failed in a way worth retrying (dropped connection, 5xx)."""


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def _fmt_bytes(n: float) -> str:
    """Human-readable size in decimal units (what download pages and ``df -H`` show)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover - loop always returns


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _host_of(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or url


def _existing_ancestor(path: Path) -> Path:
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_disk(where: Path, needed: int, what: str) -> None:
    """Raise :class:`DownloadError` when the disk holding ``where`` has < ``needed`` bytes."""
    if needed <= 0:
        return
    probe = _existing_ancestor(where)
    try:
        free = shutil.disk_usage(probe).free
    except OSError:  # cannot tell (odd file system): let the write itself fail later
        return
    if free < needed:
        raise DownloadError(
            f"Not enough free disk space in {probe}: {what} needs {_gb(needed)}, "
            f"but only {_gb(free)} is free. Free some space, or download to a bigger disk "
            "with --root DIR (or set $AUDIO_COURSE_DATA)."
        )


def _mkdirs(path: Path) -> list[Path]:
    """``mkdir -p``; returns the folders it created (deepest last) so they can be undone."""
    created: list[Path] = []
    p = Path(path)
    while not p.exists():
        created.append(p)
        if p == p.parent:
            break
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    return list(reversed(created))


def _rmdirs(created: list[Path]) -> None:
    """Remove folders made by :func:`_mkdirs` again, if they are still empty."""
    for p in reversed(created):
        try:
            p.rmdir()
        except OSError:
            break


def _sha256_of(path: Path, chunk_size: int = 1 << 20):
    """An incremental SHA-256 object fed with the whole file (so more bytes can follow)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h


def _network_message(url: str, exc: BaseException, connect_timeout: float) -> str:
    """Turn a urllib/socket exception into one actionable sentence naming the host."""
    host = _host_of(url)
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, socket.gaierror):
        detail = f"the host name {host!r} could not be resolved (no DNS / offline?): {reason}"
    elif isinstance(reason, ConnectionRefusedError):
        detail = f"the connection to {host} was refused: {reason}"
    elif isinstance(reason, TimeoutError):
        detail = f"no answer from {host} within {connect_timeout:.0f} s (timed out)"
    elif isinstance(reason, ssl.SSLCertVerificationError):
        return (
            f"Cannot download {url}: the TLS certificate of {host} could not be verified "
            f"({reason}). Update your CA certificates (e.g. `pip install -U certifi`; on macOS "
            "run 'Install Certificates.command'), or use a mirror: "
            "python utils.py download --url URL --sha256 HEX"
        )
    else:
        detail = f"{type(reason).__name__}: {reason}"
    return f"Network error: cannot reach {host} to download {url}: {detail}. {_MIRROR_HINT}"


def _open(url: str, start: int, connect_timeout: float, read_timeout: float):
    """Open ``url`` (asking for bytes ``start``- when resuming); returns the HTTP response."""
    headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
    if start > 0:
        headers["Range"] = f"bytes={start}-"
    req = urllib.request.Request(url, headers=headers)
    resp = urllib.request.urlopen(req, timeout=connect_timeout)  # noqa: S310 - http(s) only
    # Connected: from now on each read may take up to ``read_timeout``.
    try:
        resp.fp.raw._sock.settimeout(read_timeout)
    except AttributeError:  # not a plain socket response (e.g. file://); keep the timeout
        pass
    return resp


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """Parse ``bytes START-END/TOTAL`` into (START, TOTAL or None)."""
    if not value or not value.strip().startswith("bytes"):
        return None
    try:
        span, _, total = value.strip()[5:].strip().partition("/")
        start = int(span.split("-")[0])
        return start, (None if total.strip() in ("", "*") else int(total))
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# download_file
# --------------------------------------------------------------------------------------------


def download_file(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None,
    size: int | None,
    progress: bool = True,
    timeout: float = 30,
    retries: int = 3,
    chunk_size: int = 1 << 20,
) -> Path:
    """Download ``url`` to ``dest``: resumable, size- and SHA-256-verified, atomic (setup).

    Bytes stream into ``dest + '.part'``. A dropped connection is retried up to ``retries``
    times and resumed with ``Range: bytes=N-`` (``206`` appends; ``200`` means the server
    ignores ranges, so the ``.part`` restarts from zero; ``416`` means it is already complete).
    Only a ``.part`` that matches ``size`` and ``sha256`` is renamed to ``dest``; one with the
    wrong checksum is deleted. Unreachable hosts fail at once (DNS, refused) or after
    ``min(timeout, 15)`` s, and then no file or folder has been created.
    """
    dest = Path(dest)
    if not urllib.parse.urlsplit(url).scheme and os.path.exists(url):
        url = Path(url).resolve().as_uri()  # a plain local path (lab copy): file:// URL
    part = dest.with_name(dest.name + ".part")
    sha256 = sha256.lower() if sha256 else None
    connect_timeout = min(float(timeout), CONNECT_TIMEOUT_S)

    if dest.exists():  # finished earlier (e.g. keep_archive): trust it only if it verifies
        if _verify(dest, sha256, size, delete_bad=False):
            return dest
        dest.unlink()

    # A .part of exactly the expected size needs no network at all.
    if size is not None and part.exists() and part.stat().st_size == size:
        if _verify(part, sha256, size, delete_bad=True):
            os.replace(part, dest)
            return dest

    created_dirs: list[Path] = []
    attempt = 0
    bar = None
    ever_connected = False
    try:
        while True:
            try:
                have = part.stat().st_size if part.exists() else 0
                if size is not None and have > size:  # cannot be right: start over
                    part.unlink()
                    have = 0
                try:
                    resp = _open(url, have, connect_timeout, timeout)
                except urllib.error.HTTPError as e:
                    if e.code == 416 and have > 0:  # nothing after byte `have`: complete?
                        e.close()
                        if _verify(part, sha256, size, delete_bad=True):
                            os.replace(part, dest)
                            return dest
                        raise _RetryableError(
                            "server says the partial file is complete, but "
                            "it did not verify; starting again"
                        ) from e
                    if e.code >= 500 or e.code in (408, 429):
                        raise _RetryableError(f"HTTP {e.code} {e.reason}") from e
                    hint = " (wrong URL?)" if e.code in (403, 404, 410) else ""
                    raise DownloadError(
                        f"Download failed: the server {_host_of(url)} answered HTTP {e.code} "
                        f"{e.reason} for {url}{hint}. Check the URL, or use a mirror with "
                        "--url URL --sha256 HEX."
                    ) from e
                except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                    if not ever_connected:  # first contact failed: fail fast, no retries
                        raise DownloadError(_network_message(url, e, connect_timeout)) from e
                    raise _RetryableError(_network_message(url, e, connect_timeout)) from e
                ever_connected = True
                with resp:
                    h, total = _start_stream(resp, part, have, size, url, chunk_size)
                    if size is None and total is not None:  # first time we learn the size
                        kept = have if h is not None else 0
                        _check_disk(part.parent, total - kept, f"downloading {dest.name}")
                    if not created_dirs and not part.parent.exists():
                        try:
                            created_dirs = _mkdirs(part.parent)
                        except OSError as e:
                            raise DownloadError(
                                f"Cannot create the folder {part.parent}: {e}. Choose another "
                                "place with --root DIR (or set $AUDIO_COURSE_DATA)."
                            ) from e
                    mode = "ab" if h is not None and have > 0 else "wb"
                    if mode == "wb":
                        h, have = hashlib.sha256(), 0
                    if bar is None:
                        bar = tqdm(
                            total=total,
                            initial=have,
                            unit="B",
                            unit_scale=True,
                            unit_divisor=1024,
                            desc=dest.name,
                            disable=not progress,
                            leave=True,
                        )
                    else:
                        bar.reset(total=total)
                        bar.update(have)
                    got = have
                    # read1: hand over whatever has arrived (up to chunk_size), so a timeout
                    # or drop loses nothing that was already received.
                    read = getattr(resp, "read1", resp.read)
                    try:
                        f = open(part, mode)
                    except OSError as e:
                        raise DownloadError(f"Cannot write {part}: {e}.") from e
                    with f:
                        while True:
                            try:
                                chunk = read(chunk_size)
                            except (OSError, http.client.HTTPException) as e:
                                raise _RetryableError(
                                    f"connection lost after {_fmt_bytes(got)}: {e}"
                                ) from e
                            if not chunk:
                                break
                            try:
                                f.write(chunk)
                            except OSError as e:
                                full = e.errno in (errno.ENOSPC, errno.EDQUOT)
                                raise DownloadError(
                                    ("The disk is full" if full else f"Cannot write ({e})")
                                    + f" while writing {part} ({_fmt_bytes(got)} so far). "
                                    "Fix that and run the same command again: it resumes "
                                    "where it stopped."
                                ) from e
                            h.update(chunk)
                            got += len(chunk)
                            bar.update(len(chunk))
                if total is not None and got < total:
                    raise _RetryableError(
                        f"connection closed after {_fmt_bytes(got)} of {_fmt_bytes(total)}"
                    )
                if total is not None and got > total:
                    part.unlink()
                    raise DownloadError(
                        f"Received {got} bytes from {url}, more than the {total} announced; "
                        "the partial file was deleted. Run the command again."
                    )
                _check_result(part, got, h.hexdigest(), sha256, size, url)
                os.replace(part, dest)
                return dest
            except _RetryableError as e:
                attempt += 1
                if attempt > retries:
                    kept = part.exists() and part.stat().st_size > 0
                    raise DownloadError(
                        f"Download of {url} failed after {retries} retries: {e}."
                        + (
                            f" The partial file {part} was kept; running the same command "
                            "again resumes it. "
                            if kept
                            else " "
                        )
                        + _MIRROR_HINT
                    ) from e
                pause = min(RETRY_BACKOFF_S * 2 ** (attempt - 1), 10.0)
                if bar is not None:
                    bar.write(f"{e}; retrying in {pause:.0f} s ({attempt}/{retries})")
                time.sleep(pause)
    except BaseException:
        # Keep a non-empty .part (resumable); remove an empty one and any folder we made.
        try:
            if part.exists() and part.stat().st_size == 0:
                part.unlink()
        except OSError:
            pass
        _rmdirs(created_dirs)
        raise
    finally:
        if bar is not None:
            bar.close()


def _start_stream(resp, part: Path, have: int, size: int | None, url: str, chunk_size: int):
    """Decide how to use a fresh response: append (206) or restart from zero (200).

    Returns ``(hasher or None, total bytes expected or None)``; ``None`` as hasher means
    "restart from zero". Raises :class:`DownloadError` when the server's size contradicts
    ``size``.
    """
    status = getattr(resp, "status", None) or resp.getcode() or 200  # None: file:// URL
    length = resp.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if status == 206 and have > 0:
        cr = _content_range(resp.headers.get("Content-Range"))
        if cr is None or cr[0] != have:
            # A range we did not ask for: safest is to start over without a Range header.
            part.unlink(missing_ok=True)
            raise _RetryableError(f"server answered an unexpected range {cr}; restarting")
        total = cr[1] if cr[1] is not None else (have + length if length is not None else size)
        if size is not None and total is not None and total != size:
            raise _size_mismatch(url, total, size)
        # Hash what we already have first, then keep hashing the appended bytes.
        return _sha256_of(part, chunk_size), total
    if status not in (200, 206):
        raise DownloadError(f"Unexpected HTTP status {status} from {url}.")
    # 200: full body (server ignores Range, or none was sent): restart from zero.
    if size is not None and length is not None and length != size:
        raise _size_mismatch(url, length, size)
    return None, (length if length is not None else size)


def _size_mismatch(url: str, got: int, size: int) -> DownloadError:
    return DownloadError(
        f"The server says {url} is {got:,} bytes, but {size:,} bytes were expected: "
        "wrong URL, or a different version of the archive? Nothing was kept."
    )


def _check_result(
    part: Path, got: int, digest: str, sha256: str | None, size: int | None, url: str
) -> None:
    """Size, then checksum; a failed check deletes the (useless) ``.part``."""
    if size is not None and got != size:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"Size mismatch for {url}: expected {size:,} bytes, got {got:,}. "
            "The partial file was deleted; run the command again."
        )
    if sha256 is not None and digest != sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"Checksum mismatch for {url}: expected sha256 {sha256}, got {digest}. "
            "The downloaded file was deleted. If this is a mirror, make sure it holds the "
            "same archive (or pass its own --sha256)."
        )


def _verify(path: Path, sha256: str | None, size: int | None, *, delete_bad: bool) -> bool:
    """True when ``path`` has the expected size and checksum; deletes it if bad and asked."""
    n = path.stat().st_size
    ok = (size is None or n == size) and (sha256 is None or _sha256_of(path).hexdigest() == sha256)
    if not ok and delete_bad:
        path.unlink(missing_ok=True)
    return ok


# --------------------------------------------------------------------------------------------
# extract_archive
# --------------------------------------------------------------------------------------------


def _safe_member(m: tarfile.TarInfo) -> str | None:
    """Check one member; returns its normalised relative name (``None`` for the root '.')."""
    name = m.name.replace("\\", "/")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise _BadArchiveError(f"Refusing to extract {m.name!r}: absolute path in the archive.")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _BadArchiveError(f"Refusing to extract {m.name!r}: it would escape the target.")
    if (
        m.ischr()
        or m.isblk()
        or m.isfifo()
        or not (m.isfile() or m.isdir() or m.issym() or m.islnk())
    ):
        raise _BadArchiveError(f"Refusing to extract {m.name!r}: special file (device/fifo).")
    if m.issym() or m.islnk():
        link = m.linkname.replace("\\", "/")
        if link.startswith("/"):
            raise _BadArchiveError(
                f"Refusing to extract {m.name!r}: link to an absolute path {m.linkname!r}."
            )
        base = parts[:-1] if m.issym() else []  # hard links are relative to the archive root
        depth = len(base)
        for p in link.split("/"):
            if p == "..":
                depth -= 1
                if depth < 0:
                    raise _BadArchiveError(
                        f"Refusing to extract {m.name!r}: link {m.linkname!r} points outside "
                        "the target."
                    )
            elif p not in ("", "."):
                depth += 1
    if not parts:
        if not m.isdir():
            raise _BadArchiveError(f"Refusing to extract {m.name!r}: empty member name.")
        return None
    return "/".join(parts)


def _extract(archive: Path, target: Path, marker: dict | None = None) -> int:
    archive, target = Path(archive), Path(target)
    if target.exists():
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        else:
            raise DownloadError(
                f"{target} already exists and is not empty; delete it (or choose another "
                "--root) and run again."
            )
    created = _mkdirs(target.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    use_filter = hasattr(tarfile, "data_filter")
    n_files = 0
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                for m in tar:  # one pass over the (gzip) stream
                    rel = _safe_member(m)
                    if rel is None:
                        continue
                    m.name = rel
                    try:
                        if use_filter:
                            tar.extract(m, tmp, filter="data")
                        else:  # pragma: no cover - Python < 3.11.4
                            tar.extract(m, tmp)
                    except tarfile.FilterError as e:
                        raise _BadArchiveError(f"Refusing to extract {rel!r}: {e}") from e
                    n_files += m.isfile() or m.islnk()
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise _BadArchiveError(
                f"Cannot extract {archive}: {type(e).__name__}: {e}. The archive is corrupt "
                "or not a .tar.gz; delete it and download it again."
            ) from e
        except OSError as e:  # a local problem (disk full, permissions): the archive is fine
            full = e.errno in (errno.ENOSPC, errno.EDQUOT)
            raise DownloadError(
                f"{'The disk filled up' if full else 'A file system error occurred'} while "
                f"extracting {archive.name} into {target.parent}: {e}. "
                + ("Free some space (or use --root on a bigger disk)" if full else "Fix that")
                + " and run again; the verified archive is reused."
            ) from e
        entries = list(tmp.iterdir())
        content = tmp
        if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
            content = entries[0]  # archive with a single top folder: flatten it
        if marker is not None:
            (content / MARKER).write_text(json.dumps({**marker, "files": n_files}, indent=2))
        os.replace(content, target)
        if content is not tmp:
            tmp.rmdir()
        return n_files
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _rmdirs(created)
        raise


def extract_archive(archive: str | Path, target: str | Path) -> int:
    """Safely extract a ``.tar.gz`` into ``target`` and return the number of files (setup).

    Members go into a hidden temporary sibling folder first; absolute paths, ``..``, links that
    point outside and device/fifo members are refused with :class:`DownloadError`. An archive
    with a single top folder is flattened. ``target`` appears (atomic rename) only when every
    member was extracted; on any error the temporary folder is removed.
    """
    return _extract(Path(archive), Path(target))


# --------------------------------------------------------------------------------------------
# download_dataset
# --------------------------------------------------------------------------------------------


def _archive_stem(url: str) -> str:
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    for ext in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def _resolve(
    name: str | None, url: str | None, sha256: str | None, size: int | None
) -> DatasetInfo:
    if url is None:
        name = name or DEFAULT_DATASET
        if name not in DATASETS:
            raise DownloadError(
                f"Unknown dataset {name!r}. Known: {', '.join(sorted(DATASETS))}; "
                "or give --url URL --sha256 HEX for another archive in the same layout."
            )
        info = DATASETS[name]
        if sha256 is not None and sha256.lower() != info.sha256:
            raise DownloadError(
                f"--sha256 {sha256} differs from the registry's {info.sha256} for {name}; "
                "pass --url as well to download a different archive."
            )
        return info
    name = name or _archive_stem(url)
    known = DATASETS.get(name)
    if sha256 is None:
        if known is None:
            raise DownloadError(
                f"No checksum for {url}: pass --sha256 HEX (print it with `sha256sum FILE`) "
                "so the download can be verified."
            )
        sha256, size = known.sha256, size if size is not None else known.size
    elif known is not None and sha256.lower() == known.sha256 and size is None:
        size = known.size
    return DatasetInfo(
        name=name,
        url=url,
        size=size,
        sha256=sha256.lower(),
        description=known.description if known else f"archive from {url}",
    )


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
    """Download, verify and extract a dataset into ``root/<name>/``; returns that folder.

    ``name`` is a registry key (see ``DATASETS``; default ``speech_commands_v0.02``), or give an
    explicit ``url`` + ``sha256`` for a mirror / lab copy in the same layout (``name`` then
    defaults to the archive's stem). ``root`` defaults to ``data_dir()``. A finished folder
    holds a ``.complete`` marker, so calling this again returns at once without touching the
    network. The archive (``root/<name>.tar.gz``) is deleted after extraction unless
    ``keep_archive`` (notebook 05).
    """
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise DownloadError(f"--sha256 must be 64 hex digits, got {sha256!r}.")
    info = _resolve(name, url, sha256, size)
    if not info.name or info.name in (".", "..") or "/" in info.name or "\\" in info.name:
        raise DownloadError(f"Invalid dataset name {info.name!r}: use a plain folder name.")
    if root is None:
        from .env import data_dir  # imported lazily: env pulls in torch

        root = data_dir()
    root = Path(root).expanduser()
    target = root / info.name
    marker = target / MARKER

    # 1. Already there? (no network at all)
    if marker.is_file():
        try:
            done = json.loads(marker.read_text())
        except (OSError, ValueError):
            done = {}
        if done.get("sha256") in (None, info.sha256):
            print(f"{info.name}: already downloaded in {target} ({done.get('files', '?')} files)")
            return target
        raise DownloadError(
            f"{target} holds a different archive (sha256 {done.get('sha256')}, from "
            f"{done.get('url')}), not {info.sha256}. Delete the folder or use another --root."
        )
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DownloadError(
            f"{target} exists but has no {MARKER} marker (an interrupted or manual copy?). "
            "Delete it and run again, or point DATASET at that folder directly."
        )

    archive = root / f"{info.name}.tar.gz"
    part = archive.with_name(archive.name + ".part")
    root_existed = root.exists()
    try:
        # 2. Enough disk for the archive (what is still missing) plus the extracted files?
        if info.size is not None:
            have = archive.stat().st_size if archive.exists() else 0
            if not have and part.exists():
                have = min(part.stat().st_size, info.size)
            needed = info.size - have + int(EXTRACT_FACTOR * info.size)
            _check_disk(
                root,
                needed,
                f"{info.name} (archive {_fmt_bytes(info.size)} + ~"
                f"{_fmt_bytes(EXTRACT_FACTOR * info.size)} extracted"
                + (f", {_fmt_bytes(have)} already downloaded" if have else "")
                + ")",
            )

        # 3. Download (resumable, verified).
        size_txt = _fmt_bytes(info.size) if info.size else "unknown size"
        print(f"Downloading {info.name} ({size_txt}) from {info.url}\n  to {archive}")
        download_file(info.url, archive, sha256=info.sha256, size=info.size, progress=progress)
        if info.size is None:  # now we know how big the archive is
            _check_disk(
                root, int(EXTRACT_FACTOR * archive.stat().st_size), f"extracting {info.name}"
            )

        # 4. Extract atomically; the marker is written inside before the final rename.
        for stale in root.glob(f".{info.name}.tmp-*"):  # left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        print(f"Extracting {archive.name} into {target} ...")
        meta = {
            "name": info.name,
            "url": info.url,
            "sha256": info.sha256,
            "size": archive.stat().st_size,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        }
        try:
            n = _extract(archive, target, marker=meta)
        except _BadArchiveError:
            archive.unlink(missing_ok=True)  # verified but unusable: no point keeping it
            raise
        if not keep_archive:
            archive.unlink(missing_ok=True)
        print(f"Done: {n:,} files in {target}")
        return target
    except BaseException:
        if not root_existed:
            try:  # leave no empty folder behind when nothing was kept
                root.rmdir()
            except OSError:
                pass
        raise
