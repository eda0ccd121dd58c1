"""Measuring one side of a benchmark: a subprocess, its wall time and its peak RSS.

Each side runs in its own process so that its peak resident set size is its own
(``os.wait4`` returns the child's rusage), and process start-up is part of the cost,
as it is for a user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Measured:
    label: str
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    #: user + system CPU of the process and its threads: on shared cores, the part of
    #: the cost that other processes' load does not inflate as much as wall time.
    cpu_seconds: float = 0.0

    def rate(self, items: int) -> float:
        return items / self.seconds if self.seconds > 0 else float("inf")


def run(label: str, argv: list[str], env: dict[str, str] | None = None,
        check: bool = True) -> Measured:
    """Run ``argv`` to completion and measure it."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                env={**os.environ, **(env or {})})
        done = threading.Event()
        peak = [0.0]
        watcher = threading.Thread(target=_watch_peak, args=(proc.pid, done, peak),
                                   daemon=True)
        watcher.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        done.set()
        watcher.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        # ru_maxrss is not used: Linux folds the parent's peak RSS into the child's at
        # exec, so a benchmark process holding 500 MB made every side read >= 500 MB.
        measured = Measured(label, seconds, peak[0] or usage.ru_maxrss / 1024,
                            proc.returncode,
                            out.read().decode(errors="replace"),
                            err.read().decode(errors="replace"),
                            usage.ru_utime + usage.ru_stime)
    if check and measured.returncode != 0:
        raise RuntimeError(f"{label} failed ({measured.returncode}):\n{measured.stderr[-3000:]}")
    return measured


def _watch_peak(pid: int, done: threading.Event, peak: list[float]) -> None:
    """Keep ``peak[0]`` at the process's VmHWM (MB): its own high-water mark since its
    exec (Popen returns only after the exec), read every 20 ms until it exits."""
    while not done.is_set():
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]) / 1024)
                        break
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        done.wait(0.02)


def python(label: str, code: str, env: dict[str, str] | None = None) -> Measured:
    """Measure a Python snippet in a fresh interpreter of this venv."""
    return run(label, [sys.executable, "-c", code], env=env)


def gc(label: str, *args: str, env: dict[str, str] | None = None) -> Measured:
    return run(label, [str(VENV_BIN / "gc"), *args], env=env)


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(readme: Path, name: str, body: str) -> None:
    """Replace the block between ``<!-- name -->`` markers in benchmarks/README.md."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    readme.write_text(text)


#: The bare limit for the rows of a sweep on MySQL/MariaDB, as Python source to run in
#: a child process: one bulk DELETE per table, the candidates' ids (``ids``, a list of
#: 32-hex strings) in a temporary table, each its own transaction, children before
#: parents. It needs ``sa`` (sqlalchemy) and ``engine`` bound, and holds no braces, so
#: it can be part of a ``str.format`` template.
BARE_ROW_DELETE = """
with engine.connect() as c:
    c.exec_driver_sql("CREATE TEMPORARY TABLE gone (id CHAR(32) PRIMARY KEY)")
    for start in range(0, len(ids), 10000):
        c.execute(sa.text("INSERT INTO gone VALUES (:id)"),
                  [dict(id=i) for i in ids[start:start + 10000]])
    c.commit()
    for sql in (
        "DELETE FROM artifact_visualization WHERE artifact_version_id IN (SELECT id FROM gone)",
        "DELETE FROM run_metadata_resource WHERE resource_type = 'artifact_version' "
        "AND resource_id IN (SELECT id FROM gone)",
        "DELETE FROM tag_resource WHERE resource_type = 'artifact_version' "
        "AND resource_id IN (SELECT id FROM gone)",
        "DELETE FROM artifact_version WHERE id IN (SELECT id FROM gone)",
    ):
        c.exec_driver_sql(sql)
        c.commit()
"""
