"""The sweep's kill and pause points, driven by environment variables, for tests that run
the real ``gc`` as a subprocess.

The library never reads these variables: :class:`EnvironmentHooks` is a ``SweepHooks``
that tests/hooked_gc.py builds from them and hands to ``gc sweep`` through click's
context object. :func:`gc_command` is the command line to run: the plain ``gc`` console
script, or the wrapper when the environment asks for a hook.

- ``ARTIFACT_GC_TEST_KILL_AT=point:n[,point:n]`` kills the process with SIGKILL the n-th
  time it reaches ``point`` (after_intent, in_db_batch, after_commit, in_files,
  before_final).
- ``ARTIFACT_GC_TEST_INTERRUPT_AT=point:n`` sends the process SIGINT (Ctrl-C) the n-th
  time it reaches ``point``; the sweep goes on until Python raises KeyboardInterrupt
  in its main thread, as with a real Ctrl-C.
- ``ARTIFACT_GC_TEST_PAUSE_AT=point:n:DIR`` pauses the n-th time ``point`` is reached:
  it creates ``DIR/paused`` and waits (up to 120 s) for ``DIR/resume`` (lock and race
  tests).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from artifact_gc.sweep.hooks import SweepHooks

KILL_ENV = "ARTIFACT_GC_TEST_KILL_AT"
PAUSE_ENV = "ARTIFACT_GC_TEST_PAUSE_AT"
INTERRUPT_ENV = "ARTIFACT_GC_TEST_INTERRUPT_AT"

#: Longest a pause waits for ``resume`` before it carries on by itself.
PAUSE_LIMIT = 120.0

GC = str(Path(sys.executable).with_name("gc"))
HOOKED_GC = [sys.executable, str(Path(__file__).with_name("hooked_gc.py"))]


def gc_command(env: Mapping[str, str]) -> list[str]:
    """``gc`` as a command line: through tests/hooked_gc.py if ``env`` sets a hook."""
    hooked = env.get(KILL_ENV) or env.get(PAUSE_ENV) or env.get(INTERRUPT_ENV)
    return list(HOOKED_GC) if hooked else [GC]


class EnvironmentHooks(SweepHooks):
    """Kill and pause points as ``KILL_ENV`` and ``PAUSE_ENV`` describe them."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.targets: dict[str, int] = {}
        for part in environ.get(KILL_ENV, "").split(","):
            name, _, count = part.strip().partition(":")
            if name:
                self.targets[name] = int(count or 1)
        self.interrupts: dict[str, int] = {}
        for part in environ.get(INTERRUPT_ENV, "").split(","):
            name, _, count = part.strip().partition(":")
            if name:
                self.interrupts[name] = int(count or 1)
        self.seen: dict[str, int] = {}
        self.pause: tuple[str, int, str] | None = None
        spec = environ.get(PAUSE_ENV, "")
        if spec:
            name, count, directory = spec.split(":", 2)
            self.pause = (name, int(count), directory)

    def point(self, name: str) -> None:
        if name not in self.targets and name not in self.interrupts and (
                self.pause is None or self.pause[0] != name):
            return
        self.seen[name] = self.seen.get(name, 0) + 1
        if self.seen[name] == self.targets.get(name):
            os.kill(os.getpid(), signal.SIGKILL)
        if self.seen[name] == self.interrupts.get(name):
            os.kill(os.getpid(), signal.SIGINT)
        if self.pause is not None and self.pause[:2] == (name, self.seen[name]):
            directory = self.pause[2]
            open(os.path.join(directory, "paused"), "w").close()
            deadline = time.monotonic() + PAUSE_LIMIT
            while not os.path.exists(os.path.join(directory, "resume")):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
