"""The sweep lock: one sweep of a manifest at a time, and who holds it.

The lock is an ``fcntl.flock`` on a local file: the kernel drops it when the process
dies, so a sweep killed with SIGKILL leaves no stale lock behind. A remote journal's
lock file lives in a local cache directory keyed by the journal's URL (the lock
guards against a second sweep on the same machine; two machines sweeping one
manifest at once is still safe for the data, because every batch is re-verified
under the database's own lock).

Whether a sweep is running is read without touching the lock: a flock cannot be
tested without taking it, even shared, and a sweep that tried to take it at that
very instant would be refused (exit 7). The holder writes its pid and start time
into the lock file instead, and empties it before letting go; a reader checks that
this process is still alive. A sweep that ends (finished, failed or interrupted)
removes the lock file; a sweep killed with SIGKILL leaves its record, which a reader
recognises as dead and the next sweep takes over.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from artifact_gc.errors import StorageError, SweepLocked
from artifact_gc.storage.urls import is_remote, local_path

LOCK_NAME = ".sweep.lock"


def lock_path(journal_url: str) -> Path:
    """The lock file of the journal at ``journal_url``."""
    if not is_remote(journal_url):
        return Path(local_path(journal_url)) / LOCK_NAME
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(journal_url.encode()).hexdigest()[:32]
    return cache / "artifact-gc" / "locks" / f"{key}.lock"


class SweepLock:
    """The lock of the sweeps of one manifest."""

    def __init__(self, path: Path, manifest_url: str) -> None:
        self.path = path
        self.manifest_url = manifest_url

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock, or raise :class:`SweepLocked`. The lock file is removed when
        the sweep lets go (an interrupted sweep included); a killed one leaves an
        empty or stale record, which no one takes for a running sweep."""
        fd = self._acquire()
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {_start_time(os.getpid()) or '-'}\n".encode())
            yield
        finally:
            # Emptied and unlinked while still held: a sweep that opened the file before
            # the unlink finds it gone once it gets the lock (_acquire), and opens anew.
            os.ftruncate(fd, 0)
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _acquire(self) -> int:
        """An open, locked descriptor of the file now at ``self.path``."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unwritable(exc) from exc
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise self._unwritable(exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                os.close(fd)
                raise SweepLocked(
                    f"another gc sweep of {self.manifest_url} is running (lock {self.path}); "
                    "wait for it to finish, or see its progress with gc status"
                ) from exc
            except BaseException:
                os.close(fd)
                raise
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                return fd
            # The holder we waited behind removed this file as it let go: the lock now
            # lives on whichever file is at the path.
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _unwritable(self, exc: OSError) -> StorageError:
        """The lock file cannot be made: nothing has been deleted yet (the lock is taken
        before the first batch), so the sweep stops with exit 9 and where to point it."""
        # A local journal's lock is LOCK_NAME in the journal; a remote one's is named
        # after its URL in the local cache folder (lock_path).
        where = ("put the journal elsewhere with gc sweep --journal LOCATION"
                 if self.path.name == LOCK_NAME else
                 "the lock of a journal on remote storage lives in the local cache "
                 "folder: set XDG_CACHE_HOME to a folder you can write")
        return StorageError(f"cannot write the sweep lock {self.path}: "
                            f"{exc.strerror or exc}; {where}", path=str(self.path))

    def holder(self) -> int | None:
        """The pid of the sweep holding the lock now, if any; never takes the lock.

        A sweep killed with SIGKILL leaves its record behind; its process is gone (or
        its pid now belongs to a process that started at another time), so it does
        not count."""
        try:
            record = self.path.read_text().split()
        except (OSError, UnicodeDecodeError):
            return None
        if len(record) != 2 or not record[0].isdigit():
            # No sweep, or the bare pid of an older release, which never emptied it.
            return None
        pid = int(record[0])
        return pid if _alive(pid, None if record[1] == "-" else record[1]) else None

    def refuse_if_held(self) -> None:
        """Raise :class:`SweepLocked` if a sweep holds the lock now (a read: the lock
        is not taken, so it cannot turn away a sweep that starts at the same instant)."""
        pid = self.holder()
        if pid is not None:
            raise SweepLocked(
                f"another gc sweep of {self.manifest_url} is running (pid {pid}, lock "
                f"{self.path}); wait for it to finish, or see its progress with gc status"
            )


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot), from ``/proc``; None
    where there is no ``/proc`` or no such process (or a zombie: it holds no lock)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode(errors="replace")
    except OSError:
        return None
    # The command name, in parentheses, may hold spaces: fields count from the last ")".
    fields = stat[stat.rfind(")") + 2:].split()
    if len(fields) < 20 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _alive(pid: int, started: str | None) -> bool:
    if os.path.isdir("/proc/self"):
        now = _start_time(pid)
        return now is not None and (started is None or started == now)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
