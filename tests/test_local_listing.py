"""The local listing of ``gc mark --orphan-files`` (storage/listing.py): GNU find parsed by
Arrow, and the os.scandir walk used where there is no GNU find, list the same objects.

Both list every file and symlink (never following one) and every empty directory, with
its lstat size and mtime; a directory that cannot be read fails the listing (never a
partial one: invariant 9).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from artifact_gc.errors import StorageError
from artifact_gc.storage import listing
from artifact_gc.storage.listing import (
    LISTING_SCHEMA,
    gnu_find,
    list_local,
    list_local_find,
    list_local_scandir,
)

pytestmark = pytest.mark.skipif(gnu_find() is None, reason="GNU find is not installed")


def _table(batches: object) -> pa.Table:
    return pa.Table.from_batches(list(batches), schema=LISTING_SCHEMA).sort_by("path")  # type: ignore[arg-type]


def _tree(root: Path) -> None:
    (root / "step/output/0000/abcd1234").mkdir(parents=True)
    (root / "step/output/0000/abcd1234/data.bin").write_bytes(b"x" * 1234)
    (root / "step/output/1111").mkdir(parents=True)  # empty: a failed step's
    (root / "nested/empty/deeper").mkdir(parents=True)  # only the deepest is empty
    (root / "logs").mkdir()
    for i in range(300):
        (root / "logs" / f"{i:04x}.log").write_bytes(b"l" * i)
    odd = root / "odd names"
    odd.mkdir()
    for name in ("new\nline", "tab\there", "space here", "ünïcødé", "-dash", "x\\0y", "#1"):
        (odd / name).write_bytes(name.encode())
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"s" * 99)
    os.symlink(outside, root / "link-to-dir")  # listed itself, never followed
    os.symlink(root / "missing", root / "dangling")
    (root / "top-file.txt").write_bytes(b"t")


def test_find_and_scandir_list_the_same_objects(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _tree(root)
    find = gnu_find()
    assert find is not None
    by_find = _table(list_local_find(str(root), find))
    by_scandir = _table(list_local_scandir(str(root)))
    assert by_find.equals(by_scandir)
    rows = {r["path"]: r for r in by_find.to_pylist()}
    assert rows[f"{root}/step/output/1111"]["is_dir"]
    assert rows[f"{root}/nested/empty/deeper"]["is_dir"]
    assert f"{root}/nested/empty" not in rows and f"{root}/step/output/0000" not in rows
    assert rows[f"{root}/step/output/0000/abcd1234/data.bin"]["size"] == 1234
    assert rows[f"{root}/odd names/new\nline"]["size"] == len(b"new\nline")
    assert rows[f"{root}/link-to-dir"]["size"] == 0 and not rows[f"{root}/link-to-dir"]["is_dir"]
    assert f"{root}/dangling" in rows
    assert not any(p.startswith(f"{root}/link-to-dir/") for p in rows)
    info = os.lstat(root / "logs" / "0001.log")
    assert rows[f"{root}/logs/0001.log"]["mtime"] == pa.scalar(
        info.st_mtime_ns // 1000, pa.timestamp("us")).as_py()
    assert len(rows) == 1 + 2 + 300 + 7 + 2 + 1
    # Entries split across blocks of find's output (an empty directory last in a block
    # waits for the next block to show it has no entries).
    for block in (7, 64, 1000):
        monkeypatch.setattr(listing, "FIND_BLOCK", block)
        assert _table(list_local_find(str(root), find)).equals(by_find)


def test_a_root_that_is_a_symlink_is_followed_and_nothing_below_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _tree(root)
    link = tmp_path / "root-link"
    os.symlink(root, link)
    listed = _table(list_local(str(link)))
    assert listed.num_rows == 1 + 2 + 300 + 7 + 2 + 1
    assert all(p.startswith(f"{link}/") for p in listed.column("path").to_pylist())


def test_an_empty_root_and_a_missing_root_hold_nothing(tmp_path: Path) -> None:
    assert _table(list_local(str(tmp_path))).num_rows == 0
    assert _table(list_local(str(tmp_path / "absent"))).num_rows == 0


LIST_IN_CHILD = """
import sys
from artifact_gc.errors import StorageError
from artifact_gc.storage.listing import gnu_find, list_local_find, list_local_scandir
walk = {"find": lambda r: list_local_find(r, gnu_find()),
        "scandir": list_local_scandir}
try:
    for _ in walk[sys.argv[1]](sys.argv[2]):
        pass
except StorageError as exc:
    print("StorageError", exc)
    sys.exit(3)
print("listed")
"""


@pytest.mark.parametrize("walker", ["find", "scandir"])
def test_a_directory_that_cannot_be_read_fails_the_listing(tmp_path: Path,
                                                           walker: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    _tree(root)
    locked = root / "step/output/0000"
    locked.chmod(0)
    command = [sys.executable, "-c", LIST_IN_CHILD, walker, str(root)]
    if os.geteuid() == 0:
        # Root reads any directory: the child runs without that capability, so that
        # the permission applies to it as to any other user.
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv to drop CAP_DAC_*")
        command = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", *command]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        locked.chmod(0o755)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "could not list" in done.stdout and "ermission denied" in done.stdout


def test_a_root_that_is_a_file_fails_the_listing(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(StorageError, match="could not list"):
        list(list_local(str(not_a_dir)))


@pytest.mark.parametrize("walker", ["find", "scandir"])
def test_a_name_that_is_not_utf8_fails_the_listing_naming_it(tmp_path: Path,
                                                             walker: str) -> None:
    root = tmp_path / "root"
    (root / "step").mkdir(parents=True)
    (root / "step" / "fine.txt").write_bytes(b"f")
    with open(os.fsencode(root / "step") + b"/bad\xffname", "wb") as handle:
        handle.write(b"x")
    walk = {"find": lambda r: list_local_find(r, str(gnu_find())),
            "scandir": list_local_scandir}[walker]
    with pytest.raises(StorageError, match="not UTF-8") as failed:
        list(walk(str(root)))
    assert "\n" not in str(failed.value)
    if walker == "scandir":
        assert "bad" in str(failed.value)


def test_a_file_removed_during_the_scandir_walk_skips_only_itself(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file deleted between its directory's read and its lstat (a ZenML delete, a
    sweep) holds nothing now: the walk leaves out that entry and lists the rest of its
    directory, subdirectories included (dropping them would be a partial listing)."""
    root = tmp_path / "root"
    folder = root / "step" / "output"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "kept.bin").write_bytes(b"k")
    for i in range(20):
        (folder / f"f{i:02d}").write_bytes(b"x")
    real_scandir = os.scandir
    removed: list[str] = []

    class Vanishing:
        """A real DirEntry whose file another process deletes just before its lstat."""

        def __init__(self, entry: os.DirEntry[str]) -> None:
            self._entry = entry

        def __getattr__(self, name: str) -> object:
            return getattr(self._entry, name)

        def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
            if not removed and not self._entry.is_dir(follow_symlinks=False):
                os.unlink(self._entry.path)
                removed.append(self._entry.path)
            return self._entry.stat(follow_symlinks=follow_symlinks)

    class Entries:
        def __init__(self, path: str) -> None:
            self._inner = real_scandir(path)
            self._wrap = os.fspath(path) == str(folder)

        def __enter__(self) -> Entries:
            return self

        def __exit__(self, *exc: object) -> None:
            self._inner.close()

        def __iter__(self) -> object:
            return (Vanishing(e) if self._wrap else e for e in self._inner)

    monkeypatch.setattr(listing.os, "scandir", Entries)
    listed = set(_table(list_local_scandir(str(root))).column("path").to_pylist())
    monkeypatch.undo()
    assert len(removed) == 1 and removed[0] not in listed
    expected = {str(p) for p in folder.rglob("*") if p.is_file()}
    assert listed == expected and str(folder / "sub" / "kept.bin") in listed
