"""Download the public data sets into the layout this package's readers expect.

    tf-esimcse download-data --dest DIR [--what senteval,wiki1m,nli] [--force]

puts, under DIR:

- `senteval/STS/...`, `senteval/SICK/...` (plus whatever else the archive holds): SentEval's
  downstream data as SimCSE's `SentEval/data/downstream/download_dataset.sh` fetches it, the
  authors' `senteval.tar` mirror (SentEval's own links in `get_transfer_data.bash` are mostly
  dead). `tf_esimcse.data.senteval.resolve_senteval_dir(DIR)` accepts the result.
- `wiki1m_for_simcse.txt`: SimCSE's unsupervised corpus, one sentence a line.
- `nli_for_simcse.csv`: SimCSE's supervised NLI triplets (header sent0,sent1,hard_neg).

Sources (`SOURCES`, one `Source` per item, in `tf_esimcse.data.download_sources`): the SimCSE
authors' Hugging Face data set (princeton-nlp/datasets-for-simcse). A `Source` may list alternative
URLs, tried in order; the shipped table lists none while the hashes are unpinned (a third-party
mirror such as hf-mirror.com would then be trusted on its layout alone), and a dead link's error
names where else to get the files instead.

Checksums are NOT pinned yet. Every `Source.sha256` in `SOURCES` is `None`: the real hashes
could not be computed where this module was written (no internet access), and none was invented.
For an unpinned source a download is accepted when it is non-empty and has the expected layout
(a text file that is not an HTML page; the NLI csv header; STS/ and SICK/ after extraction), and
its computed sha256 is printed so that it can be pinned in `SOURCES`. A pinned source (a sha256
hex string) is checked byte for byte: a mismatch deletes the download, names the file, the
expected and the actual hash, and raises `ChecksumError`; an alternative URL is then tried.

How a download proceeds (`fetch_file`, in `tf_esimcse.data.resumable_http`): bytes go to `NAME.part`
next to the destination; an existing `.part` is resumed with an HTTP `Range` request (a server that
answers 200 instead of 206 restarts it from zero; a `.part` from an interrupted run stays for the
next run); then the size, the sha256 (when pinned) and the layout are checked, and the file is
renamed into place with one `os.replace`, so a destination file is always complete. A dead link (an
HTTP error, an unreachable host) moves on to the alternative URL; when every URL fails,
`DownloadError` lists each URL with its error and says where else to get the data. An unpinned
download never resumes a `.part` left by another URL (nothing could tell mixed bytes apart).

Archives (.tar, .tar.gz/.tgz, .zip; `tf_esimcse.data.archives`) are checked before anything is
written: absolute member names, `..` components, links and device files are refused
(`UnsafeArchiveError`). They are extracted into a temporary folder under DIR; the folder holding
STS/ and SICK/ (at any depth up to 3) is found and its top-level entries replace the same names in
`DIR/senteval/` (other entries there, e.g. a raw `stsbenchmark/`, are kept). The archive is deleted
afterwards and a record (`.download.json`: URL, archive sha256) is written in `DIR/senteval/`.

This module places the items (`download`). Items already in place are skipped unless `force=True`
(`--force`): a file when its sha256 matches (pinned) or it is non-empty with the expected layout
(unpinned); SentEval when the layout is there and, if pinned, the record names the pinned hash.
SentEval data put there by hand (no record) is kept, with a note.
"""
import json
import os
import pathlib
import re
import shutil
import tempfile

from tf_esimcse.atomic_files import write_json_atomic
from tf_esimcse.data.archives import extract_archive, find_senteval_root, install_entries, senteval_layout_ok
from tf_esimcse.data.download_sources import SOURCES, Source  # noqa: F401 (Source: the table's type, named here too)
from tf_esimcse.data.resumable_http import check_file_layout, fetch_file, log, sha256_file
from tf_esimcse.data.senteval import resolve_senteval_dir
from tf_esimcse.errors import ChecksumError, DownloadError, UnsafeArchiveError  # noqa: F401 (raised by the parts)

RECORD_NAME = ".download.json"


def _check_sha256_format(name, sha256):
    if sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise DownloadError(f"source {name!r}: sha256 must be 64 lowercase hex digits or None, got {sha256!r}")




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
            log(f"{name}: {path} has sha256 {actual}, expected {source.sha256}: downloading again")
            return False
        log(f"{name}: {path} present, sha256 verified; skipped (--force to download again)")
        return True
    try:
        check_file_layout(path, source.check)
    except DownloadError as e:
        log(f"{name}: {path} is there but unusable ({e}): downloading again")
        return False
    log(f"{name}: {path} present (size and layout checked; sha256 not pinned); skipped (--force to download again)")
    return True


def _archive_present(name, source, target):
    if not senteval_layout_ok(target):
        return False
    record = _read_record(target)
    if record is None:
        log(f"{name}: {target} already holds STS/ and SICK/ (not downloaded by this command, not verified); "
             "kept (--force to replace)")
        return True
    if source.sha256 is not None and record.get("sha256") != source.sha256:
        log(f"{name}: {target} comes from an archive with sha256 {record.get('sha256')}, expected "
             f"{source.sha256}: downloading again")
        return False
    how = "sha256 verified" if source.sha256 is not None else "layout checked; sha256 not pinned"
    log(f"{name}: {target} present ({how}); skipped (--force to download again)")
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
            file_path.with_name(file_path.name + ".part").unlink(missing_ok=True)
        log(f"{name}: downloading {source.filename}")
        fetch_file(source.urls, file_path, sha256=source.sha256, check=source.check, hint=source.hint,
                   timeout=timeout, progress_every=progress_every)
        log(f"{name}: {file_path} ready")
        return file_path

    target = dest / source.extract_to
    if not force and _archive_present(name, source, target):
        return target
    if force:
        file_path.unlink(missing_ok=True)
        file_path.with_name(file_path.name + ".part").unlink(missing_ok=True)
    # An archive left by a crash between download and extraction is reused once verified.
    reused = _verified_archive(file_path, source)
    if reused is not None:
        log(f"{name}: reusing the downloaded {file_path}")
        actual, url = reused, None
    else:
        file_path.unlink(missing_ok=True)
        log(f"{name}: downloading {source.filename}")
        fetched = fetch_file(source.urls, file_path, sha256=source.sha256, check=source.check, hint=source.hint,
                             timeout=timeout, progress_every=progress_every)
        actual, url = fetched.sha256, fetched.url
    work = pathlib.Path(tempfile.mkdtemp(prefix=f".{source.extract_to}.", suffix=".extract", dir=dest))
    try:
        log(f"{name}: extracting {file_path.name}")
        try:
            extract_archive(file_path, work)
        except DownloadError:
            file_path.unlink(missing_ok=True)
            raise
        if source.check == "senteval":
            root = find_senteval_root(work)
            if root is None:
                file_path.unlink(missing_ok=True)
                raise DownloadError(
                    f"{file_path.name} does not hold SentEval's downstream layout (STS/ and SICK/ in one "
                    f"folder); the archive was deleted; alternatively: {source.hint}"
                )
        else:
            root = work
        entries = install_entries(root, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_json_atomic(target / RECORD_NAME, {"archive": source.filename, "sha256": actual, "url": url,
                                             "sha256_pinned": source.sha256 is not None, "entries": entries})
    file_path.unlink(missing_ok=True)
    if source.check == "senteval":
        resolve_senteval_dir(dest)  # the readers' own check; raises DataError if not accepted
    log(f"{name}: {target} ready ({', '.join(entries)})")
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
