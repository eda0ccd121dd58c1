"""The undo window's files: a sweep's deletes that stay restorable until purged.

Each store offers one :class:`FileUndo`, chosen by :func:`open_file_undo` from the
backend that deletes its files:

- **local disks** (:class:`LocalTrash`): a path is renamed into
  ``<root>/.artifact-gc-trash/<sweep_id>/<relative path>`` on the same filesystem
  (one atomic rename per path, a directory moved whole; no byte is copied). Restore
  renames it back, and never over anything: the rename itself refuses an occupied
  target (``renameat2(RENAME_NOREPLACE)``).
- **S3 with bucket versioning** (storage/trash_s3.py): a delete only adds delete
  markers; restore removes the markers, purge deletes the versions they hide.
- **S3 without versioning, GCS, Azure Blob** (storage/trash_copy.py): a server-side
  copy into the trash prefix, then the normal delete.

Every operation is idempotent, so a run cut short at any point is finished by running
it again: what is already in the trash (or already back) is recognised, and the only
copy of an object is never removed before its other copy exists.

The root fence (storage/fence.py) holds for both ends of every move: a path outside
the root is refused, and so is a trash location that would resolve outside it (a
trash folder swapped for a symlink, say). Paths inside the trash itself are refused
too: the trash is not swept, only purged.
"""

from __future__ import annotations

import ctypes
import errno
import filecmp
import os
import re
import shutil
import stat
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from artifact_gc.errors import StorageError
from artifact_gc.storage.backend import Backend, DeleteOutcome
from artifact_gc.storage.fence import RealDirs, fence, strictly_inside
from artifact_gc.zenml.stores import ArtifactStore

#: The trash folder (prefix) at each store root; orphan-file marking skips it and the
#: fence allows it (it lies inside the root).
TRASH_DIR = ".artifact-gc-trash"

#: A sweep id names a folder: no separator, no dot segment, nothing to climb out with.
_SWEEP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
#: Paths between two progress callbacks.
PROGRESS_EVERY = 1000


@dataclass
class RestoreOutcome:
    """What one :meth:`FileUndo.restore` call did to its paths."""

    restored: set[str] = field(default_factory=set)
    already: set[str] = field(default_factory=set)
    conflicts: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    #: Paths with nothing in the trash and nothing in place: gone before the sweep
    #: (the sweep counts a missing path as deleted), or purged behind gc's back (a
    #: purge by gc trash empty is refused before any restore). Nothing to bring back.
    absent: set[str] = field(default_factory=set)

    def settled(self) -> int:
        """How many paths this call settled (back, already back, or nothing to bring)."""
        return len(self.restored) + len(self.already) + len(self.absent)


class FileUndo(Protocol):
    """Restorable deletes of one store's files (see the module docstring)."""

    mode: str

    def describe(self) -> str:
        """One line for the sweep plan and history, with its request cost."""
        ...

    def delete(self, sweep_id: str, paths: Sequence[str], *,
               on_chunk: Callable[[int], None] | None = None,
               known: Mapping[str, Sequence[str]] | None = None) -> DeleteOutcome:
        """``Backend.delete``'s contract, but restorable until :meth:`purge`."""
        ...

    def conflicts(self, sweep_id: str, paths: Sequence[str]) -> dict[str, str]:
        """Paths whose original location is taken now by something not ours -> why."""
        ...

    def restore(self, sweep_id: str, paths: Sequence[str], *,
                on_chunk: Callable[[int], None] | None = None) -> RestoreOutcome:
        """Bring paths back; idempotent; never overwrites an object that is not ours."""
        ...

    def purge(self, sweep_id: str, paths: Sequence[str] | None = None) -> int:
        """Delete for good what ``sweep_id`` trashed (all of it when ``paths`` is None);
        the number of objects purged."""
        ...

    def trashed_sweeps(self) -> dict[str, datetime]:
        """Sweep ids that still hold something in the trash, with when they trashed."""
        ...

    def close(self) -> None:
        ...


def check_sweep_id(sweep_id: str) -> str:
    """``sweep_id`` if it can name a trash folder, else ``StorageError``."""
    if not _SWEEP_ID.match(sweep_id) or set(sweep_id) == {"."}:
        raise StorageError(f"sweep id {sweep_id!r} cannot name a trash folder "
                           "(letters, digits, '.', '_' and '-' only)")
    return sweep_id


def relative_key(path: str, root: str) -> str:
    """``path`` relative to ``root`` (both as written: URIs or local paths); the
    caller has fenced ``path`` strictly inside ``root``."""
    base = root.rstrip("/") + "/"
    if not path.startswith(base):
        raise StorageError(f"{path} is not strictly inside the store root {root}")
    return path[len(base):].rstrip("/")


def in_trash(relative: str) -> bool:
    """Whether a root-relative path lies in (or is) the trash."""
    return relative == TRASH_DIR or relative.startswith(TRASH_DIR + "/")


def report(on_chunk: Callable[[int], None] | None, done: int) -> None:
    if on_chunk is not None and done:
        on_chunk(done)


# ---------------------------------------------------------------------------
# Local disks
# ---------------------------------------------------------------------------

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
try:
    _renameat2: Any = ctypes.CDLL(None, use_errno=True).renameat2
except (AttributeError, OSError):  # pragma: no cover - not glibc >= 2.28
    _renameat2 = None


def rename_noreplace(source: str, target: str) -> None:
    """Rename ``source`` to ``target``; ``FileExistsError`` if ``target`` exists.

    ``renameat2(RENAME_NOREPLACE)`` makes the check and the rename one atomic step, so
    nothing written at ``target`` meanwhile is ever replaced. Where the kernel or the
    filesystem lacks it, the check comes right before a plain rename (a directory
    rename still refuses a non-empty target by itself)."""
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target),
                      _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(code, os.strerror(code), source, None, target)
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), target)
    os.rename(source, target)


def same_tree(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` hold the same thing: the same bytes, the same names, the
    same symlink targets (modes and times aside)."""
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(sa.st_mode) or stat.S_ISLNK(sb.st_mode):
        return stat.S_ISLNK(sa.st_mode) and stat.S_ISLNK(sb.st_mode) \
            and os.readlink(a) == os.readlink(b)
    if stat.S_ISDIR(sa.st_mode) or stat.S_ISDIR(sb.st_mode):
        if not (stat.S_ISDIR(sa.st_mode) and stat.S_ISDIR(sb.st_mode)):
            return False
        names = sorted(os.listdir(a))
        return names == sorted(os.listdir(b)) and all(
            same_tree(os.path.join(a, n), os.path.join(b, n)) for n in names)
    return sa.st_size == sb.st_size and filecmp.cmp(a, b, shallow=False)


def remove_tree(path: str) -> int:
    """Remove ``path`` (a directory with everything in it, never following a symlink);
    the number of files (non-directories) removed. Already gone removes none."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return 0
    if not stat.S_ISDIR(mode):
        try:
            os.unlink(path)
        except FileNotFoundError:
            return 0
        return 1
    count = 0
    for top, dirs, files in os.walk(path):
        # os.walk lists a symlink to a directory among dirs, and never descends it.
        count += len(files) + sum(1 for d in dirs if os.path.islink(os.path.join(top, d)))
    shutil.rmtree(path, ignore_errors=False)
    return count


def _copy(source: str, target: str) -> None:
    """Copy ``source`` (file, symlink or directory, symlinks as links) to ``target``."""
    if os.path.isdir(source) and not os.path.islink(source):
        shutil.copytree(source, target, symlinks=True)
    elif os.path.islink(source):
        os.symlink(os.readlink(source), target)
    else:
        shutil.copy2(source, target)


def ensure_dir(directory: str, made: set[str] | None = None) -> None:
    """Create ``directory`` (and its parents) unless it exists; ``made`` remembers the
    folders one call already holds, so that each is created (or found) once per call."""
    if made is not None and directory in made:
        return
    try:
        os.mkdir(directory)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(directory, exist_ok=True)
    if made is not None:
        made.add(directory)


def move(source: str, target: str, staging: str, made: set[str] | None = None) -> None:
    """Move ``source`` to ``target`` without replacing anything at ``target``.

    One rename where the two lie on one filesystem. Across filesystems (a mount point
    inside the store) the copy goes to ``staging`` (beside ``target``) first, is renamed
    into place whole, and only then is ``source`` removed: a crash in between leaves
    two identical copies, which a rerun recognises (``same_tree``) and finishes.
    ``made``: see :func:`ensure_dir`."""
    ensure_dir(os.path.dirname(target), made)
    try:
        rename_noreplace(source, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    remove_tree(staging)
    _copy(source, staging)
    rename_noreplace(staging, target)
    remove_tree(source)


def prune_empty_dirs(start: str, stop: str) -> None:
    """Remove ``start`` and its parents while empty, up to and excluding ``stop``."""
    current = start.rstrip("/")
    stop = stop.rstrip("/")
    while current.startswith(stop + "/"):
        try:
            os.rmdir(current)
        except OSError:
            return
        current = os.path.dirname(current)


class LocalTrash:
    """Renames into ``<root>/.artifact-gc-trash/<sweep_id>/`` on the same filesystem."""

    mode = "trash"

    def __init__(self, store: ArtifactStore, root: str, fs: Any, backend: Backend) -> None:
        self.fs = fs
        self.root_uri = root
        self.root = str(fs._strip_protocol(root)).rstrip("/") or "/"
        self.trash = os.path.join(self.root, TRASH_DIR)

    def describe(self) -> str:
        return f"files move to {self.trash}/<sweep>/ (rename, no copy)"

    def close(self) -> None:
        """Nothing to release."""

    # -- where things go ----------------------------------------------------------

    def _sweep_dir(self, sweep_id: str) -> str:
        return os.path.join(self.trash, check_sweep_id(sweep_id))

    def _pairs(self, sweep_id: str, paths: Sequence[str]
               ) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
        """``(path, original, trash location)`` of every fenced path, and the refused
        paths with why. Both ends must lie strictly inside the root, symlinks
        resolved: neither a path nor its trash location may lead out of it."""
        sweep_dir = self._sweep_dir(sweep_id)
        inside, refused = fence(paths, self.root_uri)
        pairs: list[tuple[str, str, str]] = []
        dirs = RealDirs()
        # Once per call, as the fence's memo: a trash folder swapped for a symlink is
        # seen by the next call at the latest.
        trash_is_link = os.path.islink(self.trash)
        for path in inside:
            original = str(self.fs._strip_protocol(path)).rstrip("/")
            relative = relative_key(original, self.root)
            if in_trash(relative):
                refused[path] = f"{path} lies in the trash ({TRASH_DIR}): it is purged, not swept"
                continue
            target = os.path.join(sweep_dir, relative)
            # realpath resolves every folder of the trash location that exists: a
            # trash folder swapped for a symlink out of the root is caught here.
            if trash_is_link or not strictly_inside(target, self.root, dirs=dirs):
                refused[path] = f"the trash location of {path} is not inside {self.trash}"
                continue
            pairs.append((path, original, target))
        # A path before the paths inside it: the first move takes them along, and they
        # are then found already in the trash (or already back), never in the way.
        pairs.sort(key=lambda pair: pair[1])
        return pairs, refused

    # -- the protocol ----------------------------------------------------------------

    #: :meth:`delete` takes ``parents`` (see there).
    takes_parents = True

    def delete(self, sweep_id: str, paths: Sequence[str], *,
               on_chunk: Callable[[int], None] | None = None,
               known: Mapping[str, Sequence[str]] | None = None,
               parents: Collection[str] = ()) -> DeleteOutcome:
        """``parents``: folders that one finished writer owns and the caller removes
        anyway once they are empty (a step output's own ``<step_run_id>`` folder:
        sweep/orphan_files.py ``own_folders``). A path that is all its parent holds
        goes to the trash with that parent (:meth:`_take_parent`): one rename, where
        the path alone costs a folder made in the trash and one removed in the store,
        each far dearer than a rename (one allocates a block, the other frees it)."""
        pairs, refused = self._pairs(sweep_id, paths)
        outcome = DeleteOutcome(failed=refused)
        movable = {str(self.fs._strip_protocol(p)).rstrip("/") for p in parents}
        made: set[str] = set()
        done = 0
        for path, original, target in pairs:
            try:
                if not (os.path.dirname(original) in movable
                        and self._take_parent(original, target, made)):
                    self._trash_one(original, target, made)
                outcome.deleted.add(path)
            except OSError as exc:
                outcome.failed[path] = f"{type(exc).__name__}: {exc}"
            done += 1
            if done % PROGRESS_EVERY == 0:
                report(on_chunk, PROGRESS_EVERY)
        report(on_chunk, done % PROGRESS_EVERY)
        return outcome

    def _take_parent(self, original: str, target: str, made: set[str]) -> bool:
        """Move ``original``'s parent folder into the trash with it when ``original`` is
        all that folder holds; False, with nothing moved, otherwise.

        The trash then holds what a move of ``original`` alone leaves there (the
        parent's name at the parent's place, ``original`` inside it), so restore and
        purge, which go path by path, cannot tell the two apart.

        Why this is safe: the caller offers only folders one finished writer owns (a
        ``<step>/<output>/<step_run_id>`` folder: sweep/orphan_files.py
        ``own_folders``), never a folder others write into. The folder is read right
        before the rename, and anything in it besides ``original`` (a sibling, a
        visualization, anyone's file) keeps the folder in place; ``original`` then
        moves alone, as always. Whatever lands in the folder between that read and the
        rename is found by a read of the moved folder right after it, and the take is
        undone at once (:meth:`_untake_parent`: the folder renamed back, never over
        anything, and ``original`` then moves alone). Where an entry cannot go back,
        the error names where it lies, and the path is reported failed, not deleted."""
        parent, name = os.path.split(original)
        try:
            if not stat.S_ISDIR(os.lstat(parent).st_mode) or os.listdir(parent) != [name]:
                return False
        except OSError:
            return False
        moved = os.path.dirname(target)
        ensure_dir(os.path.dirname(moved), made)
        try:
            rename_noreplace(parent, moved)
        except OSError:
            # Taken in the trash already (a sibling went first in this sweep), another
            # filesystem, or gone: the path moves alone, as it always could.
            return False
        if os.listdir(moved) == [name]:
            return True
        return not self._untake_parent(parent, moved, name)

    @staticmethod
    def _untake_parent(parent: str, moved: str, name: str) -> bool:
        """Put back what a take moved besides ``name`` (see :meth:`_take_parent`): True
        when the folder went back whole (``name`` with it, still to be moved alone),
        False when only the other entries did (``name`` stays in the trash, where a
        move of it alone puts it). Never over anything: a writer that made the folder
        again in the store, empty, loses nothing by its rmdir (rmdir refuses a folder
        that is not empty); an entry that cannot go back is left in place and named."""
        try:
            if os.path.isdir(parent) and not os.path.islink(parent):
                os.rmdir(parent)
            rename_noreplace(moved, parent)
            return True
        except OSError:
            pass
        # The folder is in use in the store again: the other entries go back one by one.
        try:
            ensure_dir(parent)
            for entry in os.listdir(moved):
                if entry != name:
                    rename_noreplace(os.path.join(moved, entry), os.path.join(parent, entry))
        except OSError as exc:
            raise OSError(exc.errno or errno.EEXIST,
                          f"a folder taken into the trash held another writer's files "
                          f"that could not be put back ({exc}); they are in {moved}",
                          parent) from exc
        return False

    def _trash_one(self, original: str, target: str, made: set[str] | None = None) -> None:
        if not os.path.lexists(original):
            # Already in the trash (a resumed delete), or gone before: deleted either way.
            return
        if os.path.lexists(target):
            # A crash after a cross-filesystem copy: the trash already holds the same
            # thing, so the original is the spare copy. Anything else stays put.
            if same_tree(original, target):
                remove_tree(original)
                return
            raise FileExistsError(errno.EEXIST, "the trash already holds a different "
                                  "object for this path; neither was touched", target)
        move(original, target, target + ".artifact-gc-partial", made)

    def conflicts(self, sweep_id: str, paths: Sequence[str]) -> dict[str, str]:
        pairs, _ = self._pairs(sweep_id, paths)
        return {path: why for path, original, target in pairs
                if (why := self._conflict(original, target)) is not None}

    @staticmethod
    def _conflict(original: str, target: str) -> str | None:
        if os.path.lexists(target) and os.path.lexists(original) \
                and not same_tree(original, target):
            return f"{original} exists again (reused since the sweep); it is not the trashed copy"
        return None

    def restore(self, sweep_id: str, paths: Sequence[str], *,
                on_chunk: Callable[[int], None] | None = None) -> RestoreOutcome:
        pairs, refused = self._pairs(sweep_id, paths)
        outcome = RestoreOutcome(failed=refused)
        sweep_dir = self._sweep_dir(sweep_id)
        done = 0
        for path, original, target in pairs:
            try:
                self._restore_one(path, original, target, outcome)
            except OSError as exc:
                outcome.failed[path] = f"{type(exc).__name__}: {exc}"
            prune_empty_dirs(os.path.dirname(target), sweep_dir)
            done += 1
            if done % PROGRESS_EVERY == 0:
                report(on_chunk, PROGRESS_EVERY)
        prune_empty_dirs(sweep_dir, self.trash)
        report(on_chunk, done % PROGRESS_EVERY)
        return outcome

    def _restore_one(self, path: str, original: str, target: str,
                     outcome: RestoreOutcome) -> None:
        if not os.path.lexists(target):
            if os.path.lexists(original):
                outcome.already.add(path)
            else:
                outcome.absent.add(path)
            return
        if os.path.lexists(original):
            if same_tree(original, target):
                # A crash after a cross-filesystem copy back: finish by dropping the
                # trash copy; the original is ours.
                remove_tree(target)
                outcome.already.add(path)
            else:
                outcome.conflicts[path] = str(self._conflict(original, target))
            return
        parent, name = os.path.split(original)
        try:
            move(target, original, os.path.join(parent, f".{name}.artifact-gc-restoring"))
        except FileExistsError:
            # Written there between the check and the rename: not ours, not replaced.
            outcome.conflicts[path] = f"{original} was written while it was being restored"
            return
        outcome.restored.add(path)

    def purge(self, sweep_id: str, paths: Sequence[str] | None = None) -> int:
        sweep_dir = self._sweep_dir(sweep_id)
        if paths is None:
            # The same fence as every move: a trash folder replaced by a symlink would
            # have rmtree follow it out of the root.
            if os.path.islink(self.trash) or os.path.islink(sweep_dir) \
                    or not strictly_inside(sweep_dir, self.root, dirs=RealDirs()):
                raise StorageError(f"refusing to purge {sweep_dir}: not inside {self.root}")
            return remove_tree(sweep_dir)
        pairs, _ = self._pairs(sweep_id, paths)
        count = 0
        for _, _, target in pairs:
            count += remove_tree(target)
            prune_empty_dirs(os.path.dirname(target), sweep_dir)
        prune_empty_dirs(sweep_dir, self.trash)
        return count

    def trashed_sweeps(self) -> dict[str, datetime]:
        """Each sweep folder of the trash, dated by its last change (a later date than
        the sweep's never purges early)."""
        out: dict[str, datetime] = {}
        try:
            entries = list(os.scandir(self.trash))
        except FileNotFoundError:
            return out
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and _SWEEP_ID.match(entry.name):
                when = entry.stat(follow_symlinks=False).st_mtime
                out[entry.name] = datetime.fromtimestamp(when, tz=UTC)
        return out


# ---------------------------------------------------------------------------
# Choosing one
# ---------------------------------------------------------------------------

#: Backend class name -> ``module:factory`` of its undo, imported on first use. The
#: factory is called as ``factory(store, root, fs, backend)``.
known_undos: dict[str, str] = {
    "LocalBackend": "artifact_gc.storage.trash:LocalTrash",
    "S3Backend": "artifact_gc.storage.trash_s3:open_s3_undo",
    "ObjectStoreBackend": "artifact_gc.storage.trash_copy:open_bucket_trash",
}


def open_file_undo(store: ArtifactStore, root: str, fs: Any, backend: Backend) -> FileUndo:
    """The undo of ``store``'s files (root ``root`` on ``fs``), next to ``backend``.

    Raises ``StorageError`` with one line when this store cannot offer an undo."""
    import importlib

    for klass in type(backend).__mro__:
        name = known_undos.get(klass.__name__)
        if name is None:
            continue
        module, _, attribute = name.partition(":")
        factory: Callable[..., FileUndo] = getattr(importlib.import_module(module), attribute)
        return factory(store, root, fs, backend)
    raise StorageError(f"artifact store {store.name} ({type(backend).__name__}) offers no "
                       "undo window: sweep it with --no-undo")
