"""Archive checks and extraction for `tf-esimcse download-data`: members that would land outside the
folder are refused before anything is written; SentEval's STS/ and SICK/ are found and installed.
"""
import os
import pathlib
import re
import shutil
import stat
import tarfile
import zipfile

from tf_esimcse.errors import DownloadError, UnsafeArchiveError


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


def find_senteval_root(folder, max_depth=3):
    """The shallowest folder (name order) under `folder` holding both STS/ and SICK/."""
    level = [pathlib.Path(folder)]
    for _ in range(max_depth + 1):
        for candidate in level:
            if senteval_layout_ok(candidate):
                return candidate
        level = sorted(p for d in level for p in d.iterdir() if p.is_dir() and not p.is_symlink())
    return None


def install_entries(root, target):
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


def senteval_layout_ok(directory):
    """True when `directory` holds both STS/ and SICK/ (SentEval's downstream layout)."""
    directory = pathlib.Path(directory)
    return (directory / "STS").is_dir() and (directory / "SICK").is_dir()
