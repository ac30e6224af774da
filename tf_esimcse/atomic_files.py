"""Files and folders written atomically: written beside their final place, then one `os.replace`.

A crash or SIGKILL mid-write leaves either the previous complete file (folder) or the new
complete one, never a truncated one, and no temporary file (folder) behind on an exception.
"""
import contextlib
import json
import os
import pathlib
import shutil
import tempfile


def _umask():
    umask = os.umask(0o077)  # swapped back at once; a file made meanwhile elsewhere is only more private
    os.umask(umask)
    return umask


def _file_mode(path):
    """What `open(path, "w")` would leave: an existing file's permissions, else 0o666 less the
    umask (`tempfile.mkstemp` makes 0o600 files, unreadable to a server running as another user)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def write_atomic(path, write_fn, mode="wb"):
    """Write `path` atomically: `write_fn(f)` writes into a temporary file beside it (opened with
    `mode`; text modes are UTF-8), which is flushed, fsync'ed and renamed into place. Creates the
    parent folder; on any error the temporary file is removed and `path` is untouched. Returns
    `path` as a `pathlib.Path`."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            write_fn(f)
            f.flush()
            os.chmod(tmp, _file_mode(path))
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_text_atomic(path, text):
    """Write `text` (UTF-8) to `path` atomically; creates the parent folder."""
    write_atomic(path, lambda f: f.write(text), mode="w")


def write_json_atomic(path, obj):
    """`obj` as indented, key-sorted JSON at `path`, written atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _check_replaceable(path, overwrite):
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"{path}: exists and is not a directory.")
    if not overwrite and path.is_dir() and any(path.iterdir()):
        raise FileExistsError(f"{path}: directory exists and is not empty; pass overwrite=True to replace it.")


def _move_into_place(new, path):
    """`os.replace(new, path)`; an existing `path` is first renamed aside (into a fresh sibling
    folder) and removed only once `new` is in place: put back if the second rename fails, and left
    aside, never deleted, if even that fails."""
    if not path.exists():
        os.replace(new, path)
        return
    aside = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    previous = aside / "previous"
    try:
        os.replace(path, previous)
        os.replace(new, path)
    except BaseException:
        if os.path.lexists(previous):
            os.replace(previous, path)
        os.rmdir(aside)
        raise
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def replace_directory(path, overwrite=True, mode=None):
    """Write a folder atomically: yields a fresh empty folder beside `path` (same parent, so the
    final rename is atomic); on normal exit it replaces `path`.

    An existing `path` is renamed aside, the new folder renamed into place, then the old one
    removed: whatever fails, the previous folder survives. On an exception the temporary folder
    is removed and `path` is untouched. Creates the parent folder.

    Args:
        path: str or path. The folder to write.
        overwrite: bool. With `False`, an existing non-empty `path` is not replaced
            (`FileExistsError`, checked on entry and again before the rename).
        mode: int or None. Permissions given to the folder before it is moved into place;
            `None`: those of the folder it replaces, else what `mkdir` would give, 0o777 less
            the umask (`tempfile.mkdtemp` makes it 0o700, unreadable to a server running as
            another user).

    Raises:
        FileExistsError: `path` exists and is not a folder, or (`overwrite=False`) is a non-empty one.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _check_replaceable(path, overwrite)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if mode is None:
            try:
                mode = path.stat().st_mode & 0o7777  # a folder replaced keeps its permissions
            except FileNotFoundError:
                mode = 0o777 & ~_umask()
        os.chmod(tmp, mode)
        _check_replaceable(path, overwrite)  # it may have appeared while we were writing
        _move_into_place(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
