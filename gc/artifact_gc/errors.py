"""The GCError family and the one table that maps errors to exit codes.

Every error the library raises on purpose derives from :class:`GCError` and carries
the data a caller needs; the CLI turns them into ``FAILED: ...`` and the exit code
listed here (and in ``gc --help``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_DATABASE = 3
EXIT_SCHEMA = 4
EXIT_MANIFEST_REFUSED = 5
EXIT_ABORTED = 6
EXIT_SWEEP_LOCKED = 7
EXIT_PARTIAL = 8
EXIT_STORAGE = 9
EXIT_BRAKE = 10
EXIT_RESTORE_CONFLICT = 11
EXIT_NOT_RESTORABLE = 12
#: As a shell reports a process that SIGINT (Ctrl-C) ended: 128 + 2.
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\b
Exit codes:
    0  success
    1  unexpected failure (run with --traceback for details)
    2  usage error (bad option or argument)
    3  the metadata database cannot be reached or read
    4  the ZenML schema is missing a core table or cannot be understood
    5  a manifest was refused (incomplete, tampered, wrong database,
       unknown format version, too old)
    6  aborted at the confirmation prompt
    7  another sweep of the same manifest is running
    8  the sweep finished with failed items (see gc status)
    9  the artifact store cannot be reached or a delete failed for good,
       or a manifest, report or sweep journal cannot be written where
       asked (put the journal elsewhere with gc sweep --journal LOCATION)
   10  a brake of gc collect fired: nothing was swept, the manifests
       are left for review
   11  gc restore refused: an id or a path was reused since the sweep
       (the message names it); nothing was restored
   12  gc restore refused: what was asked cannot come back (swept with
       --no-undo, or purged by gc trash empty)
  130  interrupted (Ctrl-C); a sweep prints what it finished and the
       command that resumes it, a mark publishes nothing
"""


class GCError(Exception):
    """Base of every error artifact-gc raises on purpose.

    ``done`` is what a long operation had finished when it stopped (the sweep puts its
    partial report there), so that a caller can still show it."""

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.done: dict[str, Any] | None = None


class UsageError(GCError):
    """Bad input from the user that click could not catch by itself."""

    exit_code = EXIT_USAGE


class DatabaseError(GCError):
    """The metadata store cannot be reached, or its URL is not usable."""

    exit_code = EXIT_DATABASE


class StoreLocked(DatabaseError):
    """The metadata store stayed locked (or kept failing transiently) past the mark's
    lock timeout; ``limit_seconds`` is that limit."""

    def __init__(self, message: str, limit_seconds: float) -> None:
        super().__init__(message)
        self.limit_seconds = limit_seconds


class SchemaError(GCError):
    """The database does not look like a ZenML store we can reason about."""

    exit_code = EXIT_SCHEMA

    def __init__(self, message: str, missing: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.missing = missing


class ManifestRefused(GCError):
    """A manifest that must not be swept (or read) as it is."""

    exit_code = EXIT_MANIFEST_REFUSED

    def __init__(self, message: str, url: str, reason: str) -> None:
        super().__init__(message)
        self.url = url
        self.reason = reason


class Aborted(GCError):
    """The user declined at a confirmation prompt."""

    exit_code = EXIT_ABORTED


class Interrupted(GCError):
    """The user interrupted the command (SIGINT, Ctrl-C). ``done`` says what a sweep
    had finished; every finished batch is journaled, so running it again resumes."""

    exit_code = EXIT_INTERRUPTED


class SweepLocked(GCError):
    """Another sweep holds the journal lock of this manifest."""

    exit_code = EXIT_SWEEP_LOCKED


class SweepIncomplete(GCError):
    """The sweep ended with items that failed for good (``--ignore-errors``)."""

    exit_code = EXIT_PARTIAL

    def __init__(self, message: str, failed: int) -> None:
        super().__init__(message)
        self.failed = failed


class StorageError(GCError):
    """The artifact store refused or failed a call for good, or an output location
    (a manifest, a report) cannot be written."""

    exit_code = EXIT_STORAGE

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class BrakeFired(GCError):
    """A brake of ``gc collect`` stopped the collection before its sweep: nothing was
    deleted, and the manifests are left for review."""

    exit_code = EXIT_BRAKE

    def __init__(self, message: str, brakes: tuple[str, ...]) -> None:
        super().__init__(message)
        self.brakes = brakes


class RestoreConflict(GCError):
    """``gc restore`` would overwrite something: a row id, a unique key or a path has
    been reused since the sweep. Nothing is restored."""

    exit_code = EXIT_RESTORE_CONFLICT


class NotRestorable(GCError):
    """``gc restore`` was asked for something whose undo data does not exist (a sweep
    with ``--no-undo``) or was purged (``gc trash empty``)."""

    exit_code = EXIT_NOT_RESTORABLE


def caused_by_interrupt(error: BaseException) -> bool:
    """Whether ``error`` is, or was raised while handling, a KeyboardInterrupt (a
    library whose clean-up fails after Ctrl-C raises its own error instead)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


@dataclass(frozen=True)
class ItemFailure:
    """One artifact version that could not be deleted, and why."""

    artifact_version_id: str
    stage: str
    cause: str
