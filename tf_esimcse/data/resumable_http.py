"""Resumable HTTP(S)/file downloads, verified before they are put in place (`fetch_file`), and the
layout checks of a downloaded file (`check_file_layout`). How they are used: `tf_esimcse.data.download`.
"""
import hashlib
import http.client
import os
import pathlib
import re
import time
import urllib.error
import urllib.request
from typing import NamedTuple

from tf_esimcse.errors import ChecksumError, DownloadError

_CHUNK = 1 << 20


def log(message):
    """One progress line on stdout, flushed at once."""
    print(message, flush=True)


def _format_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0


def sha256_file(path):
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _describe_error(e):
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"{e.reason}"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


# --------------------------------------------------------------------------------------------
# Layout checks


def _looks_like_html(head):
    start = head.lstrip()[:15].lower()
    return start.startswith(b"<!doctype html") or start.startswith(b"<html")


def check_file_layout(path, check):
    """Raise `DownloadError` unless the file at `path` is non-empty and passes `check`
    ("text" or "nli_csv"; archives are checked after extraction)."""
    path = pathlib.Path(path)
    size = path.stat().st_size
    if size == 0:
        raise DownloadError(f"{path.name} is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(1 << 16)
    if _looks_like_html(head):
        raise DownloadError(f"{path.name} is an HTML page, not the data file (a login or error page?)")
    if check in ("text", "nli_csv"):
        try:  # the 64 KiB cut may split a multi-byte character: drop up to 3 trailing bytes
            text = next(head[: len(head) - k].decode("utf-8") for k in range(4) if _utf8_ok(head[: len(head) - k]))
        except StopIteration:
            raise DownloadError(f"{path.name} is not UTF-8 text") from None
        if check == "nli_csv":
            header = text.lstrip("\ufeff").split("\n", 1)[0].strip()
            if [h.strip() for h in header.split(",")[:3]] != ["sent0", "sent1", "hard_neg"]:
                raise DownloadError(f"{path.name} does not start with the header sent0,sent1,hard_neg (got {header[:60]!r})")
    elif check != "senteval":
        raise DownloadError(f"unknown layout check {check!r} for {path.name}")


def _utf8_ok(data):
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Downloading


class _Interrupted(Exception):
    """The transfer stopped after some bytes arrived (resumable)."""


class FetchResult(NamedTuple):
    """What `fetch_file` placed: the file, its sha256 (hex) and the URL it came from."""

    path: pathlib.Path
    sha256: str
    url: str


def _transfer(url, part, timeout, resume, progress_every):
    """One HTTP/file request for `url` into `part` (appending from its size if `resume`).

    Returns the number of bytes now in `part`. Raises URLError/HTTPError/OSError when nothing
    could be requested, `_Interrupted` when the transfer broke off after it started.
    """
    offset = part.stat().st_size if (resume and part.exists()) else 0
    name = part.name[: -len(".part")] if part.name.endswith(".part") else part.name
    request = urllib.request.Request(url, headers={"User-Agent": "tf-esimcse-download/1"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # range past the end: the .part is stale or complete; restart
            e.close()
            log(f"  {name}: server refused to resume (HTTP 416), restarting from zero")
            part.unlink(missing_ok=True)
            return _transfer(url, part, timeout, False, progress_every)
        raise
    with response:
        status = getattr(response, "status", None)
        total = None
        if offset and status == 206:
            match = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                part.unlink(missing_ok=True)  # the next try starts from zero
                raise _Interrupted(f"bad Content-Range {response.headers.get('Content-Range')!r} for a resume")
            total = int(match.group(3)) if match.group(3) != "*" else None
            mode, done = "ab", offset
            log(f"  {name}: resuming at {_format_bytes(offset)}")
        else:
            if offset:
                log(f"  {name}: server ignored the range request, restarting from zero")
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode, done = "wb", 0
        last = time.monotonic()
        with open(part, mode) as f:  # a write error (disk full) propagates as it is
            while True:
                try:
                    block = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as e:  # reset, timeout, bad chunking
                    raise _Interrupted(_describe_error(e)) from e
                if not block:
                    break
                f.write(block)
                done += len(block)
                now = time.monotonic()
                if now - last >= progress_every:
                    last = now
                    log(_progress_line(name, done, total))
            f.flush()
            os.fsync(f.fileno())
    if total is not None and done != total:
        raise _Interrupted(f"connection closed at {done} of {total} bytes")
    log(_progress_line(name, done, total))
    return done


def _progress_line(name, done, total):
    if total:
        return f"  {name}: {_format_bytes(done)} / {_format_bytes(total)} ({100.0 * done / total:.0f}%)"
    return f"  {name}: {_format_bytes(done)}"


def fetch_file(urls, dest_file, sha256=None, check="text", hint="", timeout=60.0, retries=2, progress_every=2.0):
    """Download the first working URL of `urls` to `dest_file`, verified, via `dest_file.part`.

    Args:
        urls: sequence of str. Primary URL first, then alternatives (http, https or file).
        dest_file: path-like. Final location; written only once the download is complete and
            verified (one `os.replace`).
        sha256: str or None. Pinned hex sha256; None = not pinned (size and layout checked,
            computed hash printed).
        check: str. Layout check for `check_file_layout` ("senteval" checks nothing here).
        hint: str. Where else to get the file, for the error message.
        timeout: float. Socket timeout in seconds.
        retries: int. Extra tries of one URL after a transfer broke off (each resumes).
        progress_every: float. Seconds between progress lines.

    Returns:
        `FetchResult(path, sha256, url)` for the file now at `dest_file`.

    Raises:
        ChecksumError: a pinned sha256 did not match on any URL (nothing is left in place).
        DownloadError: every URL failed; the message lists each URL and its error.
    """
    dest_file = pathlib.Path(dest_file)
    part = dest_file.with_name(dest_file.name + ".part")
    failures, mismatches = [], []
    for index, url in enumerate(urls):
        # Bytes from another URL are only trusted when a pinned hash will check the result.
        resume = index == 0 or sha256 is not None
        if not resume:
            part.unlink(missing_ok=True)
        attempt = 0
        while True:
            resumed = resume and part.exists() and part.stat().st_size > 0
            log(f"  {dest_file.name}: from {url}" + (f" (a partial {part.name} is there)" if resumed else ""))
            try:
                _transfer(url, part, timeout, resume, progress_every)
            except _Interrupted as e:
                attempt += 1
                if attempt <= retries:
                    log(f"  {dest_file.name}: transfer broke off ({e}); retrying ({attempt}/{retries})")
                    resume = True
                    continue
                failures.append(f"{url} (transfer broke off: {e})")
                break
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
                failures.append(f"{url} ({_describe_error(e)})")
                break
            actual = sha256_file(part)
            if sha256 is not None and actual != sha256:
                part.unlink(missing_ok=True)
                if resumed and attempt <= retries:  # the old .part may be what was wrong
                    attempt += 1
                    log(f"  {dest_file.name}: sha256 mismatch after resuming; downloading again from zero")
                    resume = False
                    continue
                mismatches.append(f"expected {sha256}, got {actual} (from {url})")
                failures.append(f"{url} (sha256 mismatch)")
                break
            try:
                check_file_layout(part, check)
            except DownloadError as e:
                part.unlink(missing_ok=True)
                failures.append(f"{url} ({e})")
                break
            os.replace(part, dest_file)
            if sha256 is None:
                log(f"  {dest_file.name}: sha256 {actual} (not pinned: pin it in tf_esimcse.data.download_sources.SOURCES to verify future downloads)")
            else:
                log(f"  {dest_file.name}: sha256 verified")
            return FetchResult(dest_file, actual, url)
    if mismatches:
        raise ChecksumError(
            f"sha256 mismatch for {dest_file.name}: " + "; ".join(mismatches)
            + f"; the download was deleted and nothing was put at {dest_file}"
            + (f"; tried {', '.join(failures)}" if len(failures) > len(mismatches) else "")
            + (f"; alternatively: {hint}" if hint else "")
        )
    kept = f"; the partial download {part} is kept and resumes on the next run" if part.exists() else ""
    raise DownloadError(
        f"could not download {dest_file.name}: tried " + ", ".join(failures) + kept
        + (f"; alternatively: {hint}" if hint else "")
    )
