"""Where a test or a benchmark may step into a running sweep: injected, never read
from the environment. The default, :class:`SweepHooks` itself, does nothing.

- :meth:`SweepHooks.point` is called at the named instants of a batch (:data:`POINTS`).
  The crash tests kill the process there, the race tests pause it there.
- :meth:`SweepHooks.phase` wraps each phase of a batch (:data:`PHASES`); the
  benchmarks time them with it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

#: The instants of a batch, in order. A crash at any of them must lose nothing.
AFTER_INTENT = "after_intent"  # the intent is durable, nothing is deleted yet
IN_DB_BATCH = "in_db_batch"  # the rows are deleted, the transaction is not committed
AFTER_COMMIT = "after_commit"  # the rows are gone for good, the files not yet
IN_FILES = "in_files"  # after each chunk of file deletes
BEFORE_FINAL = "before_final"  # rows and files are gone, the outcome is not journaled
POINTS = (AFTER_INTENT, IN_DB_BATCH, AFTER_COMMIT, IN_FILES, BEFORE_FINAL)

#: The phases of a batch. They overlap: a batch's files are deleted on their own
#: thread while the next batch is in the database.
BATCH_BEGIN = "batch_begin"  # fence, intent, the database step
DATABASE = "database"  # the locked transaction, with its retries
VERIFY = "verify"  # re-verification against the live database
DELETE_ROWS = "delete_rows"  # the cascade of row deletes
DELETE_FILES = "delete_files"  # the files of a batch
JOURNAL = "journal"  # one durable journal segment
BATCH_FINISH = "batch_finish"  # the outcome: accounting and its journal segment
UNDO_ROWS = "undo_rows"  # the undo segment of a batch's deleted rows (before the commit)
WARM = "warm"  # unlocked reads of the next batch's rows (its own thread; MySQL/MariaDB)
PHASES = (BATCH_BEGIN, DATABASE, VERIFY, DELETE_ROWS, DELETE_FILES, JOURNAL, BATCH_FINISH,
          UNDO_ROWS, WARM)


class SweepHooks:
    """Hooks that do nothing. Subclass and pass to ``execute(plan, hooks=...)``."""

    def point(self, name: str) -> None:
        """The sweep has reached the instant ``name`` (one of :data:`POINTS`)."""

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Around one run of the phase ``name`` (one of :data:`PHASES`); may be entered
        from the file-deleting thread, and from the thread that reads ahead."""
        yield
