"""`tf_esimcse.atomic_files`: files and folders written atomically, the previous version kept on
any failure and no temporary file or folder left behind."""
import json
import os

import pytest

from tf_esimcse import atomic_files
from tf_esimcse.atomic_files import replace_directory, write_atomic, write_json_atomic, write_text_atomic


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- write_atomic ---


def test_write_atomic_writes_and_creates_the_parent(tmp_path):
    path = tmp_path / "a" / "b" / "data.bin"
    assert write_atomic(path, lambda f: f.write(b"\x00\x01")) == path
    assert path.read_bytes() == b"\x00\x01"
    assert _names(path.parent) == ["data.bin"]


def test_write_atomic_text_mode_is_utf8(tmp_path):
    path = tmp_path / "text.txt"
    write_atomic(path, lambda f: f.write("héllo\n"), mode="w")
    assert path.read_bytes() == "héllo\n".encode("utf-8")


def test_write_atomic_replaces_an_existing_file(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")
    write_atomic(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"
    assert _names(tmp_path) == ["data.bin"]


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt("killed")])
def test_write_atomic_failure_keeps_the_old_file(tmp_path, error):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")

    def half_written(f):
        f.write(b"ne")
        raise error

    with pytest.raises(type(error)):
        write_atomic(path, half_written)
    assert path.read_bytes() == b"old"
    assert _names(tmp_path) == ["data.bin"]  # no temporary file left


def test_write_atomic_failed_rename_leaves_no_temp(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(tmp_path / "data.bin", lambda f: f.write(b"x"))
    assert _names(tmp_path) == []


def test_text_and_json_helpers(tmp_path):
    write_text_atomic(tmp_path / "t.txt", "line\n")
    assert (tmp_path / "t.txt").read_text(encoding="utf-8") == "line\n"
    write_json_atomic(tmp_path / "d" / "x.json", {"b": 1, "a": [2]})
    assert (tmp_path / "d" / "x.json").read_text() == json.dumps({"a": [2], "b": 1}, indent=2) + "\n"


# --- replace_directory ---


def test_replace_directory_creates_a_new_folder(tmp_path):
    target = tmp_path / "parent" / "out"
    with replace_directory(target) as tmp:
        assert tmp.parent == target.parent and tmp.is_dir() and not list(tmp.iterdir())
        assert not target.exists()  # nothing in place until the block ends
        (tmp / "a.txt").write_text("a")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text("b")
    assert _tree(target) == {"a.txt": b"a", "sub/b.txt": b"b"}
    assert _names(target.parent) == ["out"]


def test_replace_directory_replaces_an_existing_folder(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    with replace_directory(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert _tree(target) == {"new.txt": b"new"}
    assert _names(tmp_path) == ["out"]  # no temporary or old folder left


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"), KeyboardInterrupt("killed")])
def test_replace_directory_failure_keeps_the_old_folder(tmp_path, error):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    with pytest.raises(type(error)):
        with replace_directory(target) as tmp:
            (tmp / "keep.txt").write_text("half")
            raise error
    assert _tree(target) == {"keep.txt": b"old"}
    assert _names(tmp_path) == ["out"]


def test_replace_directory_failure_without_a_previous_folder(tmp_path):
    with pytest.raises(RuntimeError):
        with replace_directory(tmp_path / "out") as tmp:
            (tmp / "x").write_text("x")
            raise RuntimeError("boom")
    assert _names(tmp_path) == []


def test_replace_directory_failed_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("old")
    real_replace = os.replace

    def failing_second_rename(src, dst):
        if str(dst) == str(target) and str(src).endswith(".tmp"):  # the new folder into place
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(atomic_files.os, "replace", failing_second_rename)
    with pytest.raises(OSError, match="rename failed"):
        with replace_directory(target) as tmp:
            (tmp / "new.txt").write_text("new")
    monkeypatch.undo()
    assert _tree(target) == {"keep.txt": b"old"}
    assert _names(tmp_path) == ["out"]


def test_replace_directory_refuses_unless_overwrite(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        with replace_directory(target, overwrite=False):
            pytest.fail("the block should not run")
    assert _tree(target) == {"keep.txt": b"mine"}
    assert _names(tmp_path) == ["out"]

    empty = tmp_path / "empty"
    empty.mkdir()
    with replace_directory(empty, overwrite=False) as tmp:  # an empty folder is fine
        (tmp / "x").write_text("x")
    assert _tree(empty) == {"x": b"x"}


def test_replace_directory_refuses_a_folder_that_appeared_meanwhile(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(FileExistsError, match="not empty"):
        with replace_directory(target, overwrite=False) as tmp:
            (tmp / "new.txt").write_text("new")
            target.mkdir()
            (target / "theirs.txt").write_text("theirs")
    assert _tree(target) == {"theirs.txt": b"theirs"}
    assert _names(tmp_path) == ["out"]


def test_replace_directory_refuses_a_file(tmp_path):
    (tmp_path / "file").write_text("data")
    with pytest.raises(FileExistsError, match="not a directory"):
        with replace_directory(tmp_path / "file"):
            pytest.fail("the block should not run")
    assert (tmp_path / "file").read_text() == "data"
    assert _names(tmp_path) == ["file"]


def test_replace_directory_mode(tmp_path):
    with replace_directory(tmp_path / "out", mode=0o755) as tmp:
        (tmp / "x").write_text("x")
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


def test_files_and_folders_get_the_permissions_open_and_mkdir_would_give(tmp_path):
    """Not mkstemp's 0o600 / mkdtemp's 0o700: a saved model must be readable by a server running as
    another user when the umask allows it; an existing file keeps its own permissions."""
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "new.txt", "x")
        assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o644
        (tmp_path / "kept.txt").write_text("old")
        os.chmod(tmp_path / "kept.txt", 0o640)
        write_text_atomic(tmp_path / "kept.txt", "new")
        assert (tmp_path / "kept.txt").stat().st_mode & 0o777 == 0o640
        with replace_directory(tmp_path / "folder") as tmp:
            (tmp / "x").write_text("x")
        assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o755
        os.chmod(tmp_path / "folder", 0o750)
        with replace_directory(tmp_path / "folder") as tmp:
            (tmp / "y").write_text("y")
        assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o750 and (tmp_path / "folder" / "y").is_file()
        os.umask(0o077)
        write_text_atomic(tmp_path / "private.txt", "x")
        assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
