"""The local trash takes a version's own folder along with it (storage/trash.py,
``LocalTrash.delete(parents=...)``): one rename instead of a folder made in the trash
and one removed in the store, and only when the path is all that folder holds.

- a folder that holds anything else (a live sibling version, a visualization file)
  stays where it is, with all it holds; only the path moves;
- two candidates of one folder both go, the folder is then removed as empty;
- a file that lands in the folder in the instant between its read and its rename is
  renamed back at once;
- the trash's layout is the same either way, so restore brings back identical bytes,
  and a folder not named in ``parents`` is never moved.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from artifact_gc.storage import trash as trash_module
from artifact_gc.storage.backend import Backend, open_backend
from artifact_gc.storage.limits import RequestLimits
from artifact_gc.storage.retry import RetryCounter
from artifact_gc.storage.trash import TRASH_DIR, LocalTrash, open_file_undo
from artifact_gc.zenml.stores import ArtifactStore

RUN_A, RUN_B, RUN_C = (f"step/out/{c * 8}-0000-0000-0000-{c * 12}" for c in "abc")
LAYOUT = {
    f"{RUN_A}/a1/artifact.bin": b"a1",
    f"{RUN_B}/b1/artifact.bin": b"b1 is live",
    f"{RUN_B}/b2/artifact.bin": b"b2",
    f"{RUN_C}/c1/artifact.bin": b"c1",
    f"{RUN_C}/viz.html": b"a visualization nobody swept",
    "step/out/other/keep.bin": b"keep",
}


def _tree(root: Path, *, trash: bool = False) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and trash == p.relative_to(root).as_posix().startswith(TRASH_DIR)}


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, Backend, LocalTrash]:
    from fsspec.implementations.local import LocalFileSystem

    root = tmp_path / "store"
    for relative, body in LAYOUT.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(body)
    meta = ArtifactStore(id="c" * 32, name="parents", flavor="test", root=str(root),
                         root_source="test")
    backend = open_backend(meta, str(root), LocalFileSystem(), workers=2,
                           retries=RetryCounter(), limits=RequestLimits())
    undo = open_file_undo(meta, str(root), LocalFileSystem(), backend)
    assert isinstance(undo, LocalTrash)
    return root, backend, undo


def _parents(root: Path) -> list[str]:
    return [str(root / run) for run in (RUN_A, RUN_B, RUN_C)]


def test_only_a_folder_the_path_alone_fills_moves(
    store: tuple[Path, Backend, LocalTrash], monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, backend, undo = store
    before = _tree(root)
    paths = [str(root / RUN_A / "a1"), str(root / RUN_B / "b2"), str(root / RUN_C / "c1")]
    renamed: list[str] = []
    real_rename = trash_module.rename_noreplace

    def recorded(source: str, target: str) -> None:
        renamed.append(source)
        real_rename(source, target)

    monkeypatch.setattr(trash_module, "rename_noreplace", recorded)
    outcome = undo.delete("s1", paths, parents=_parents(root))
    monkeypatch.undo()
    # A live sibling (b1) and a visualization never leave their place, not even for
    # an instant: their folders are not moved at all.
    assert renamed == [str(root / RUN_A), *paths[1:]]
    assert outcome.deleted == set(paths) and not outcome.failed
    # Run A's folder held a1 alone: it went whole. B and C hold more: they stay.
    assert not (root / RUN_A).exists()
    assert _tree(root) == {k: v for k, v in before.items()
                           if not k.startswith((f"{RUN_A}/", f"{RUN_B}/b2/", f"{RUN_C}/c1/"))}
    assert _tree(root / TRASH_DIR / "s1") == {
        k: v for k, v in before.items()
        if k.startswith((f"{RUN_A}/a1/", f"{RUN_B}/b2/", f"{RUN_C}/c1/"))}

    restored = undo.restore("s1", paths)
    assert restored.restored == set(paths) and not restored.conflicts
    assert _tree(root) == before and undo.trashed_sweeps() == {}
    backend.close()


def test_two_candidates_of_one_folder_both_go(store: tuple[Path, Backend, LocalTrash]
                                              ) -> None:
    root, backend, undo = store
    before = _tree(root)
    paths = [str(root / RUN_B / "b1"), str(root / RUN_B / "b2")]
    assert undo.delete("s2", paths, parents=_parents(root)).deleted == set(paths)
    assert backend.remove_empty_dirs([str(root / RUN_B)]) == 1
    assert not (root / RUN_B).exists()
    assert undo.restore("s2", paths).restored == set(paths)
    assert _tree(root) == before
    backend.close()


def test_a_folder_not_named_is_never_moved(store: tuple[Path, Backend, LocalTrash]) -> None:
    root, backend, undo = store
    path = str(root / RUN_A / "a1")
    assert undo.delete("s3", [path]).deleted == {path}
    assert (root / RUN_A).is_dir() and os.listdir(root / RUN_A) == []
    backend.close()


def test_a_file_written_during_the_move_comes_back(
    store: tuple[Path, Backend, LocalTrash], monkeypatch: pytest.MonkeyPatch,
) -> None:
    root, backend, undo = store
    folder = root / RUN_A
    real_listdir = os.listdir
    wrote: list[bool] = []

    def listdir_then_write(path: Any) -> list[str]:
        names = real_listdir(path)
        if str(path) == str(folder) and not wrote:
            # A writer's file lands right after the folder was read, before the rename.
            (folder / "late.txt").write_bytes(b"written meanwhile")
            wrote.append(True)
        return names

    monkeypatch.setattr(trash_module.os, "listdir", listdir_then_write)
    path = str(folder / "a1")
    outcome = undo.delete("s4", [path], parents=[str(folder)])
    monkeypatch.undo()
    assert wrote and outcome.deleted == {path} and not outcome.failed
    assert _tree(folder) == {"late.txt": b"written meanwhile"}
    assert _tree(root / TRASH_DIR / "s4") == {f"{RUN_A}/a1/artifact.bin": b"a1"}
    backend.close()


def test_a_folder_made_again_and_written_keeps_every_file(
    store: tuple[Path, Backend, LocalTrash], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A writer's file lands in the folder before its rename, and the writer makes the
    folder again in the store right after it and writes there too: the folder cannot
    go back whole, so the writer's first file goes back alone; nothing of the writer's
    stays in the trash (a purge would delete it)."""
    root, backend, undo = store
    folder = root / RUN_A
    real_listdir = os.listdir
    real_rename = trash_module.rename_noreplace
    events: list[str] = []

    def listdir_then_write(path: Any) -> list[str]:
        names = real_listdir(path)
        if str(path) == str(folder) and "late" not in events:
            (folder / "late.txt").write_bytes(b"written meanwhile")
            events.append("late")
        return names

    def rename_then_write_again(source: str, target: str) -> None:
        real_rename(source, target)
        if source == str(folder) and "again" not in events:
            folder.mkdir()
            (folder / "again.txt").write_bytes(b"written after the rename")
            events.append("again")

    monkeypatch.setattr(trash_module.os, "listdir", listdir_then_write)
    monkeypatch.setattr(trash_module, "rename_noreplace", rename_then_write_again)
    path = str(folder / "a1")
    outcome = undo.delete("s5", [path], parents=[str(folder)])
    monkeypatch.undo()
    assert events == ["late", "again"]
    assert outcome.deleted == {path} and not outcome.failed
    assert _tree(folder) == {"late.txt": b"written meanwhile",
                             "again.txt": b"written after the rename"}
    assert _tree(root / TRASH_DIR / "s5") == {f"{RUN_A}/a1/artifact.bin": b"a1"}
    assert undo.restore("s5", [path]).restored == {path}
    assert _tree(folder)["a1/artifact.bin"] == b"a1"
    backend.close()


def test_only_a_step_runs_own_output_folder_is_offered(tmp_path: Path) -> None:
    """sweep/orphan_files.py ``own_folders``: the ``<step>/<output>/<step_run_id>``
    folder of a suffixed step output, which only that step run writes into; never a
    folder other writers share."""
    from artifact_gc.sweep.orphan_files import own_folders
    from artifact_gc.sweep.verify import BatchItem

    root = str(tmp_path / "store")
    run = "0" * 8 + "-1111-2222-3333-" + "4" * 12

    def item(relative: str) -> BatchItem:
        return BatchItem(artifact_version_id=relative, artifact_id="a",
                         footprint=(f"{root}/{relative}",), store_root=root)

    offered = own_folders([
        item(f"trainer/model/{run}/0a1b2c3d"),          # ZenML's suffixed layout
        item(f"trainer/model/{run}"),                   # older: the parent is shared
        item(f"custom_artifacts/name/{run}"),           # every save of the name
        item(f"external_artifacts/external_{run}"),
        item("datasets/user/file.csv"),                 # a user's
        BatchItem(artifact_version_id="x", artifact_id="a",
                  footprint=(f"{root}/trainer/model/{run}/0a1b2c3d",)),  # no store root
    ])
    assert offered == [f"{root}/trainer/model/{run}"]
