"""The root fence: nothing outside an artifact store's root is ever deleted.

Mark checks the rule in DuckDB, the sweep checks it again before the database step,
and every storage backend checks it a last time right before it deletes
(:func:`fence`), whatever the manifest and the database say.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable

from artifact_gc.paths import inside_root


class PathOutsideRoot(ValueError):
    """A path that is not strictly inside its store's root; never deleted."""


@functools.lru_cache(maxsize=64)
def _real_root(root: str) -> str:
    return os.path.realpath(root)


class RealDirs:
    """``os.path.realpath`` of directories, with the grandparents of paths memoized.

    A version's path is ``<root>/<step>/<output>/<uuid>/<hash>``: its parent is its
    own, but its grandparent is shared by thousands of versions, and ``realpath``
    costs one ``lstat`` per path component. The memo holds only those grandparents;
    the parent itself is checked with an ``lstat`` every time, so a parent (or the
    path, see :func:`strictly_inside`) swapped for a symlink is still seen. Keep one
    per batch: the memo is never invalidated.
    """

    def __init__(self) -> None:
        self._memo: dict[str, str] = {}

    def parent(self, path: str) -> str:
        """``os.path.realpath(os.path.dirname(path))``, cheaply."""
        parent = os.path.dirname(path)
        grandparent, name = os.path.split(parent)
        if not name or name in (".", "..") or grandparent == parent:
            return os.path.realpath(parent)
        real = self._memo.get(grandparent)
        if real is None:
            real = self._memo[grandparent] = os.path.realpath(grandparent)
        # realpath(parent) == realpath(realpath(grandparent)/name), and a joined path
        # whose last component is no symlink is already its own realpath.
        joined = os.path.join(real, name)
        return os.path.realpath(joined) if os.path.islink(joined) else joined


def strictly_inside(path: str, root: str, *, resolve: bool = True,
                    dirs: RealDirs | None = None) -> bool:
    """True when ``path`` lies strictly below ``root`` (never the root itself).

    No ``..`` or ``.`` segment is accepted, so a URI cannot climb out of the root
    by spelling; local paths are also compared after resolving symlinks, so a link
    inside the root that points elsewhere is not followed out of it.
    """
    # The lexical rule is mark's own (artifact_gc.paths): what mark protected as
    # outside the root, the sweep refuses here by the same definition.
    if not inside_root(path, root):
        return False
    path_s = path.rstrip("/")
    root_s = root.rstrip("/") or "/"
    if resolve and "://" not in root_s:
        real_root = _real_root(root_s)
        real_parent = (dirs.parent(path_s) if dirs is not None
                       else os.path.realpath(os.path.dirname(path_s)))
        if os.path.islink(path_s):
            return False
        if real_parent != real_root and not real_parent.startswith(real_root.rstrip("/") + "/"):
            return False
    return True


def fence(paths: Iterable[str], root: str) -> tuple[list[str], dict[str, str]]:
    """Split ``paths`` into those strictly inside ``root`` (once each, in order) and the
    refused ones, each with the reason. Backends call it right before they delete."""
    inside: list[str] = []
    refused: dict[str, str] = {}
    # A fresh memo per call: a directory swapped for a symlink is seen by the next
    # call at the latest, the same window as between this check and the delete.
    dirs = RealDirs()
    for path in dict.fromkeys(paths):
        if strictly_inside(path, root, dirs=dirs):
            inside.append(path)
        else:
            refused[path] = f"{path} is not strictly inside the store root {root}"
    return inside, refused
