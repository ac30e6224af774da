"""Download the public data sets into the layout this package's readers expect.

    tf-esimcse download-data --dest DIR [--what senteval,wiki1m,nli] [--force]

puts, under DIR:

- `senteval/STS/...`, `senteval/SICK/...` (plus whatever else the archive holds): SentEval's
  downstream data as SimCSE's `SentEval/data/downstream/download_dataset.sh` fetches it, the
  authors' `senteval.tar` mirror (SentEval's own links in `get_transfer_data.bash` are mostly
  dead). `tf_esimcse.data.senteval.resolve_senteval_dir(DIR)` accepts the result.
- `wiki1m_for_simcse.txt`: SimCSE's unsupervised corpus, one sentence a line.
- `nli_for_simcse.csv`: SimCSE's supervised NLI triplets (header sent0,sent1,hard_neg).

Sources (`SOURCES`, one `Source` per item): the SimCSE authors' Hugging Face data set
(princeton-nlp/datasets-for-simcse). A `Source` may list alternative URLs, tried in order; the
shipped table lists none while the hashes are unpinned (a third-party mirror such as hf-mirror.com
would then be trusted on its layout alone), and a dead link's error names where else to get the
files instead.

Checksums are NOT pinned yet. Every `Source.sha256` in `SOURCES` is `None`: the real hashes
could not be computed where this module was written (no internet access), and none was invented.
For an unpinned source a download is accepted when it is non-empty and has the expected layout
(a text file that is not an HTML page; the NLI csv header; STS/ and SICK/ after extraction), and
its computed sha256 is printed so that it can be pinned in `SOURCES`. A pinned source (a sha256
hex string) is checked byte for byte: a mismatch deletes the download, names the file, the
expected and the actual hash, and raises `ChecksumError`; an alternative URL is then tried.

How a download proceeds (`fetch_file`): bytes go to `NAME.part` next to the destination; an
existing `.part` is resumed with an HTTP `Range` request (a server that answers 200 instead of 206
restarts it from zero; a `.part` from an interrupted run stays for the next run); then the size,
the sha256 (when pinned) and the layout are checked, and the file is renamed into place with one
`os.replace`, so a destination file is always complete. A dead link (an HTTP error, an unreachable
host) moves on to the alternative URL; when every URL fails, `DownloadError` lists each URL with
its error and says where else to get the data. An unpinned download never resumes a `.part` left
by another URL (nothing could tell mixed bytes apart).

Archives (.tar, .tar.gz/.tgz, .zip) are checked before anything is written: absolute member
names, `..` components, links and device files are refused (`UnsafeArchiveError`). They are
extracted into a temporary folder under DIR; the folder holding STS/ and SICK/ (at any depth up to
3) is found and its top-level entries replace the same names in `DIR/senteval/` (other entries
there, e.g. a raw `stsbenchmark/`, are kept). The archive is deleted afterwards and a record
(`.download.json`: URL, archive sha256) is written in `DIR/senteval/`.

Items already in place are skipped unless `force=True` (`--force`): a file when its sha256
matches (pinned) or it is non-empty with the expected layout (unpinned); SentEval when the layout
is there and, if pinned, the record names the pinned hash. SentEval data put there by hand (no
record) is kept, with a note.
"""
import hashlib
import http.client
import json
import os
import pathlib
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from typing import NamedTuple, Optional

from tf_esimcse.atomic_files import write_json_atomic
from tf_esimcse.errors import ChecksumError, DownloadError, TfEsimcseError, UnsafeArchiveError

_HF = "https://huggingface.co/datasets/princeton-nlp/datasets-for-simcse/resolve/main/"
_HF_CLI_HINT = (
    "`huggingface-cli download --repo-type dataset princeton-nlp/datasets-for-simcse {name} "
    "--local-dir DIR` (behind a blocked huggingface.co, with HF_ENDPOINT=https://hf-mirror.com), or a "
    "browser, then place it as DIR/{name}"
)
RECORD_NAME = ".download.json"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Source:
    """One downloadable item.

    Attributes:
        filename: str. Name of the downloaded file in DEST (for an archive, deleted after
            extraction).
        urls: tuple of str. Primary URL first, then alternatives/mirrors, tried in order.
        sha256: str or None. Expected sha256 (hex) of the downloaded file; None = not pinned
            (see the module docstring).
        extract_to: str or None. None: the file itself is the result (`DEST/filename`). Otherwise
            the file is an archive (.tar, .tar.gz, .tgz, .zip) extracted into `DEST/extract_to`.
        check: str. Layout check: "text" (non-empty, UTF-8, not an HTML page), "nli_csv" (header
            sent0,sent1,hard_neg) or "senteval" (STS/ and SICK/ after extraction).
        hint: str. Where else to get it, for the error message when every URL fails.
    """

    filename: str
    urls: tuple
    sha256: Optional[str] = None
    extract_to: Optional[str] = None
    check: str = "text"
    hint: str = ""


SOURCES = {
    "senteval": Source(
        filename="senteval.tar",
        urls=(_HF + "senteval.tar",),
        sha256=None,  # not pinned yet: see the module docstring
        extract_to="senteval",
        check="senteval",
        hint=(
            "run `bash download_dataset.sh` in SimCSE's SentEval/data/downstream/ "
            "(github.com/princeton-nlp/SimCSE) or SentEval's `data/downstream/get_transfer_data.bash` "
            "(original links, often dead), then put STS/ and SICK/ in DIR/senteval/"
        ),
    ),
    "wiki1m": Source(
        filename="wiki1m_for_simcse.txt",
        urls=(_HF + "wiki1m_for_simcse.txt",),
        sha256=None,  # not pinned yet: see the module docstring
        check="text",
        hint=_HF_CLI_HINT.format(name="wiki1m_for_simcse.txt"),
    ),
    "nli": Source(
        filename="nli_for_simcse.csv",
        urls=(_HF + "nli_for_simcse.csv",),
        sha256=None,  # not pinned yet: see the module docstring
        check="nli_csv",
        hint=_HF_CLI_HINT.format(name="nli_for_simcse.csv"),
    ),
}


# --------------------------------------------------------------------------------------------
# Small helpers


def _log(message):
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


def _check_sha256_format(name, sha256):
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise DownloadError(f"source {name!r}: sha256 must be 64 lowercase hex digits or None, got {sha256!r}")


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


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


def _senteval_layout_ok(directory):
    directory = pathlib.Path(directory)
    return (directory / "STS").is_dir() and (directory / "SICK").is_dir()


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
            _log(f"  {name}: server refused to resume (HTTP 416), restarting from zero")
            _unlink(part)
            return _transfer(url, part, timeout, False, progress_every)
        raise
    with response:
        status = getattr(response, "status", None)
        total = None
        if offset and status == 206:
            match = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                _unlink(part)  # the next try starts from zero
                raise _Interrupted(f"bad Content-Range {response.headers.get('Content-Range')!r} for a resume")
            total = int(match.group(3)) if match.group(3) != "*" else None
            mode, done = "ab", offset
            _log(f"  {name}: resuming at {_format_bytes(offset)}")
        else:
            if offset:
                _log(f"  {name}: server ignored the range request, restarting from zero")
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
                    _log(_progress_line(name, done, total))
            f.flush()
            os.fsync(f.fileno())
    if total is not None and done != total:
        raise _Interrupted(f"connection closed at {done} of {total} bytes")
    _log(_progress_line(name, done, total))
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
            _unlink(part)
        attempt = 0
        while True:
            resumed = resume and part.exists() and part.stat().st_size > 0
            _log(f"  {dest_file.name}: from {url}" + (f" (a partial {part.name} is there)" if resumed else ""))
            try:
                _transfer(url, part, timeout, resume, progress_every)
            except _Interrupted as e:
                attempt += 1
                if attempt <= retries:
                    _log(f"  {dest_file.name}: transfer broke off ({e}); retrying ({attempt}/{retries})")
                    resume = True
                    continue
                failures.append(f"{url} (transfer broke off: {e})")
                break
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
                failures.append(f"{url} ({_describe_error(e)})")
                break
            actual = sha256_file(part)
            if sha256 is not None and actual != sha256:
                _unlink(part)
                if resumed and attempt <= retries:  # the old .part may be what was wrong
                    attempt += 1
                    _log(f"  {dest_file.name}: sha256 mismatch after resuming; downloading again from zero")
                    resume = False
                    continue
                mismatches.append(f"expected {sha256}, got {actual} (from {url})")
                failures.append(f"{url} (sha256 mismatch)")
                break
            try:
                check_file_layout(part, check)
            except DownloadError as e:
                _unlink(part)
                failures.append(f"{url} ({e})")
                break
            os.replace(part, dest_file)
            if sha256 is None:
                _log(f"  {dest_file.name}: sha256 {actual} (not pinned: pin it in tf_esimcse.data.download.SOURCES to verify future downloads)")
            else:
                _log(f"  {dest_file.name}: sha256 verified")
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


# --------------------------------------------------------------------------------------------
# Archives


def _archive_kind(path):
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        return "tar"
    raise DownloadError(f"{path.name}: unknown archive type (expected .tar, .tar.gz, .tgz or .zip)")


def _check_member_name(archive, name):
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized):
        raise UnsafeArchiveError(f"{archive.name}: refused: member {name!r} has an absolute path")
    if ".." in normalized.split("/"):
        raise UnsafeArchiveError(f"{archive.name}: refused: member {name!r} points outside the folder ('..')")


def extract_archive(archive, into):
    """Extract a .tar, .tar.gz/.tgz or .zip `archive` into the existing folder `into`, safely.

    Every member is checked first: absolute paths, `..` components, symbolic and hard links and
    device files raise `UnsafeArchiveError` before anything is written.
    """
    archive, into = pathlib.Path(archive), pathlib.Path(into)
    kind = _archive_kind(archive)
    if kind == "zip":
        if not zipfile.is_zipfile(archive):
            raise DownloadError(f"{archive.name}: not a zip archive")
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                _check_member_name(archive, info.filename)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise UnsafeArchiveError(f"{archive.name}: refused: member {info.filename!r} is a link")
            z.extractall(into)
        return
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise DownloadError(f"{archive.name}: not a readable tar archive ({e})") from e
    with tar:
        try:
            members = tar.getmembers()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DownloadError(f"{archive.name}: damaged tar archive ({e})") from e
        for member in members:
            _check_member_name(archive, member.name)
            if member.issym() or member.islnk():
                raise UnsafeArchiveError(f"{archive.name}: refused: member {member.name!r} is a link")
            if not (member.isfile() or member.isdir()):
                raise UnsafeArchiveError(f"{archive.name}: refused: member {member.name!r} is not a file or folder")
        try:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: defence in depth
                tar.extractall(into, members=members, filter="data")
            else:
                tar.extractall(into, members=members)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DownloadError(f"{archive.name}: extraction failed ({e})") from e


def _find_senteval_root(folder, max_depth=3):
    """The shallowest folder (name order) under `folder` holding both STS/ and SICK/."""
    level = [pathlib.Path(folder)]
    for _ in range(max_depth + 1):
        for candidate in level:
            if _senteval_layout_ok(candidate):
                return candidate
        level = sorted(p for d in level for p in d.iterdir() if p.is_dir() and not p.is_symlink())
    return None


def _install_entries(root, target):
    """Move each top-level entry of `root` to `target/`, replacing an entry of the same name.

    Each replaced entry is first renamed aside, then the new one renamed in, then the old one
    deleted: a crash leaves either the old or the new entry (plus a `.old` folder to delete).
    """
    target.mkdir(parents=True, exist_ok=True)
    names = sorted(p.name for p in root.iterdir())
    for name in names:
        new, dest = root / name, target / name
        old = None
        if dest.exists() or dest.is_symlink():
            old = target / f".{name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old) if old.is_dir() else old.unlink()
            os.replace(dest, old)
        os.replace(new, dest)
        if old is not None:
            shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    return names


# --------------------------------------------------------------------------------------------
# Items


def _read_record(folder):
    try:
        return json.loads((pathlib.Path(folder) / RECORD_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _file_present(name, source, path):
    """True when `path` holds a verified copy (pinned sha256, or size and layout when unpinned)."""
    if not path.is_file():
        return False
    if source.sha256 is not None:
        actual = sha256_file(path)
        if actual != source.sha256:
            _log(f"{name}: {path} has sha256 {actual}, expected {source.sha256}: downloading again")
            return False
        _log(f"{name}: {path} present, sha256 verified; skipped (--force to download again)")
        return True
    try:
        check_file_layout(path, source.check)
    except DownloadError as e:
        _log(f"{name}: {path} is there but unusable ({e}): downloading again")
        return False
    _log(f"{name}: {path} present (size and layout checked; sha256 not pinned); skipped (--force to download again)")
    return True


def _archive_present(name, source, target):
    if not _senteval_layout_ok(target):
        return False
    record = _read_record(target)
    if record is None:
        _log(f"{name}: {target} already holds STS/ and SICK/ (not downloaded by this command, not verified); "
             "kept (--force to replace)")
        return True
    if source.sha256 is not None and record.get("sha256") != source.sha256:
        _log(f"{name}: {target} comes from an archive with sha256 {record.get('sha256')}, expected "
             f"{source.sha256}: downloading again")
        return False
    how = "sha256 verified" if source.sha256 is not None else "layout checked; sha256 not pinned"
    _log(f"{name}: {target} present ({how}); skipped (--force to download again)")
    return True


def _verified_archive(file_path, source):
    """sha256 of an archive already at `file_path` if it can be used (pinned: matches; unpinned:
    non-empty, not HTML), else None."""
    if not file_path.is_file():
        return None
    actual = sha256_file(file_path)
    if source.sha256 is not None:
        return actual if actual == source.sha256 else None
    try:
        check_file_layout(file_path, source.check)
    except DownloadError:
        return None
    return actual


def _download_item(name, source, dest, force, timeout, progress_every):
    file_path = dest / source.filename
    if source.extract_to is None:
        if not force and _file_present(name, source, file_path):
            return file_path
        if force:
            _unlink(file_path.with_name(file_path.name + ".part"))
        _log(f"{name}: downloading {source.filename}")
        fetch_file(source.urls, file_path, sha256=source.sha256, check=source.check, hint=source.hint,
                   timeout=timeout, progress_every=progress_every)
        _log(f"{name}: {file_path} ready")
        return file_path

    target = dest / source.extract_to
    if not force and _archive_present(name, source, target):
        return target
    if force:
        _unlink(file_path)
        _unlink(file_path.with_name(file_path.name + ".part"))
    # An archive left by a crash between download and extraction is reused once verified.
    reused = _verified_archive(file_path, source)
    if reused is not None:
        _log(f"{name}: reusing the downloaded {file_path}")
        actual, url = reused, None
    else:
        _unlink(file_path)
        _log(f"{name}: downloading {source.filename}")
        fetched = fetch_file(source.urls, file_path, sha256=source.sha256, check=source.check, hint=source.hint,
                             timeout=timeout, progress_every=progress_every)
        actual, url = fetched.sha256, fetched.url
    work = pathlib.Path(tempfile.mkdtemp(prefix=f".{source.extract_to}.", suffix=".extract", dir=dest))
    try:
        _log(f"{name}: extracting {file_path.name}")
        try:
            extract_archive(file_path, work)
        except DownloadError:
            _unlink(file_path)
            raise
        if source.check == "senteval":
            root = _find_senteval_root(work)
            if root is None:
                _unlink(file_path)
                raise DownloadError(
                    f"{file_path.name} does not hold SentEval's downstream layout (STS/ and SICK/ in one "
                    f"folder); the archive was deleted; alternatively: {source.hint}"
                )
        else:
            root = work
        entries = _install_entries(root, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_json_atomic(target / RECORD_NAME, {"archive": source.filename, "sha256": actual, "url": url,
                                             "sha256_pinned": source.sha256 is not None, "entries": entries})
    _unlink(file_path)
    if source.check == "senteval":
        from tf_esimcse.data.senteval import resolve_senteval_dir

        resolve_senteval_dir(dest)  # the readers' own check; raises DataError if not accepted
    _log(f"{name}: {target} ready ({', '.join(entries)})")
    return target


def parse_what(what, sources=None):
    """`--what` value -> list of item names, in the order given, without repeats.

    Args:
        what: str (comma-separated, "all" for every item), a sequence of str, or None (all).
        sources: dict of name -> `Source`; defaults to `SOURCES`.

    Raises:
        DownloadError: for an unknown or empty item list; the message lists the known items.
    """
    sources = SOURCES if sources is None else sources
    known = ", ".join(sources)
    if what is None:
        return list(sources)
    items = what.split(",") if isinstance(what, str) else list(what)
    names = []
    for item in items:
        item = str(item).strip()
        if not item:
            continue
        if item == "all":
            names.extend(n for n in sources if n not in names)
            continue
        if item not in sources:
            raise DownloadError(f"unknown item {item!r} in --what; expected a comma-separated list of: {known} (or all)")
        if item not in names:
            names.append(item)
    if not names:
        raise DownloadError(f"--what is empty; expected a comma-separated list of: {known} (or all)")
    return names


def download(what=None, dest=".", sources=None, force=False, timeout=60.0, progress_every=2.0):
    """Download and place the items `what` under `dest` (see the module docstring).

    Args:
        what: str (comma list), sequence of str, or None for every item of `sources`.
        dest: path-like. Data root (created if missing), e.g. the `--data-dir` of `evaluate`.
        sources: dict of name -> `Source`; defaults to the module's `SOURCES` (tests inject
            `file://` or local HTTP URLs here).
        force: bool. Download again even if a verified copy is in place.
        timeout: float. Socket timeout in seconds.
        progress_every: float. Seconds between progress lines.

    Returns:
        dict of item name -> `pathlib.Path` of the placed file or folder.

    Raises:
        DownloadError (ChecksumError, UnsafeArchiveError): a one-line message naming the item,
            the file, the URLs tried and where else to get it.
    """
    sources = SOURCES if sources is None else sources
    names = parse_what(what, sources)
    for name in names:
        _check_sha256_format(name, sources[name].sha256)
    dest = pathlib.Path(os.path.expanduser(str(dest)))
    if dest.exists() and not dest.is_dir():
        raise DownloadError(f"{dest}: exists and is not a folder")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"{dest}: cannot create the folder ({e.strerror})") from e
    placed = {}
    for name in names:
        try:
            placed[name] = _download_item(name, sources[name], dest, force, timeout, progress_every)
        except DownloadError as e:
            raise type(e)(f"{name}: {e}") from e
        except OSError as e:  # disk full, permissions: one line, naming the item
            raise DownloadError(f"{name}: {e.filename or dest}: {e.strerror or e}") from e
    return placed


# --------------------------------------------------------------------------------------------
# Command line


def add_download_parser(subparsers):
    """Add the `download-data` subcommand to an argparse `subparsers` object; returns its parser."""
    p = subparsers.add_parser(
        "download-data",
        help="download SentEval, wiki1m and/or SimCSE's NLI data into DEST (resumable, verified)",
        description="Download the public data sets into the layout the readers expect: DEST/senteval/, "
                    "DEST/wiki1m_for_simcse.txt, DEST/nli_for_simcse.csv. Interrupted downloads resume; every "
                    "file is checked (size, SHA-256 where known, layout) before it is put in place.",
    )
    data = p.add_argument_group("data", "what is fetched, and where to")
    data.add_argument("--dest", required=True, metavar="DIR",
                      help="data root to fill (e.g. ./data, the --data-dir of evaluate and the recipes); created if "
                           "missing (required)")
    data.add_argument("--what", default=None, metavar="ITEMS",
                      help=f"comma-separated items to fetch, from: {','.join(SOURCES)} (default: all of them)")
    data.add_argument("--force", action="store_true",
                      help="download again even if the item is already in place and verified (default: off)")
    p.set_defaults(func=cmd_download_data, fn=cmd_download_data)
    return p


def cmd_download_data(args):
    """Run `download-data` for parsed `args` (dest, what, force); returns the exit code (0).

    Errors raise `DownloadError` (a `TfEsimcseError`) with a one-line message.
    """
    placed = download(what=args.what, dest=args.dest, force=getattr(args, "force", False))
    for name, path in placed.items():
        _log(f"done: {name} -> {path}")
    return 0


def main(argv=None):
    """Stand-alone entry point: `python -m tf_esimcse.data.download --dest DIR ...`."""
    from tf_esimcse.config import FlagParser, HelpFormatter

    parser = FlagParser(prog="python -m tf_esimcse.data.download", formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command")
    add_download_parser(sub)
    args = parser.parse_args(["download-data"] + list(sys.argv[1:] if argv is None else argv))
    try:
        return args.func(args)
    except TfEsimcseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
