"""Files written atomically: a temporary file in the same folder, then one `os.replace`.

A crash or SIGKILL mid-write leaves either the previous complete file or the new complete one,
never a truncated file, and no temporary file behind on an exception.
"""
import json
import os
import pathlib
import tempfile


def write_text_atomic(path, text):
    """Write `text` (UTF-8) to `path` atomically; creates the parent folder."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_json_atomic(path, obj):
    """`obj` as indented, key-sorted JSON at `path`, written atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
