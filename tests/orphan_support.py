"""A real ZenML 0.98 store with every kind of orphan file, and the traps that must survive.

``build_orphan_store`` runs ``orphan_zenml.py build`` (real pipelines, real deletes,
``zenml artifact prune --only-metadata``) once per session; each test restores a copy
at the same absolute path, adds the traps that need no ZenML (``add_traps``), and
back-dates everything but the fresh trap past the grace period, so that the age rule
is never what protects a trap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artifact_gc.storage.trash import TRASH_DIR

SCRIPT = Path(__file__).with_name("orphan_zenml.py")
#: How far back the store's objects are dated (the tests mark with a 1-day grace).
BACKDATE_SECONDS = 30 * 86400
FRESH_STEP_RUN = "5d1e8c7a-3b2f-4c6d-8e9f-0a1b2c3d4e5f"


def zenml_env(config_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update({"ZENML_CONFIG_PATH": str(config_dir), "ZENML_ANALYTICS_OPT_IN": "false",
                "ZENML_LOGGING_VERBOSITY": "WARN", "AUTO_OPEN_DASHBOARD": "false"})
    return env


def run_zenml(config_dir: Path, *args: str, timeout: float = 900) -> dict[str, Any]:
    """Run ``orphan_zenml.py`` against the store in ``config_dir``; its JSON output."""
    proc = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=config_dir,
                          env=zenml_env(config_dir), capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"orphan_zenml.py {args}:\n{proc.stderr[-6000:]}"
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@dataclass
class OrphanStore:
    config_dir: Path
    built: dict[str, Any]

    @property
    def root(self) -> Path:
        return Path(self.built["root"])

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.config_dir}/local_stores/default_zen_store/zenml.db"

    @property
    def store_id(self) -> str:
        return str(self.built["artifact_store_id"])

    @property
    def leaks(self) -> dict[str, Any]:
        return dict(self.built["leaks"])


def add_traps(root: Path) -> dict[str, Path]:
    """Files that no row names and that are not garbage by layout, plus a fresh
    step-output directory with no row yet (a step that has just started)."""
    traps = {
        "code_upload": root / "code_uploads" / "3f2a9c.tar.gz",
        "integration": root / "mlflow" / "1" / "meta.yaml",
        "user_file": root / "my_notes.txt",
        "user_tree": root / "user_data" / "raw" / "part-0.parquet",
        "fresh": root / "fresh_step" / "output" / FRESH_STEP_RUN / "0a1b2c3d" / "data.bin",
    }
    for path in traps.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"t" * 64)
    return traps


def backdate(root: Path, keep_fresh: Path | None, seconds: int = BACKDATE_SECONDS) -> None:
    """Set every mtime under ``root`` back by ``seconds``, except under ``keep_fresh``."""
    then = time.time() - seconds
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(directory) / name
            if keep_fresh is not None and (path == keep_fresh or keep_fresh in path.parents):
                continue
            os.utime(path, (then, then), follow_symlinks=False)


def tree(root: Path) -> set[str]:
    """Every file and directory under ``root``, relative, the undo trash's sweep
    folders named alike (:func:`any_sweep`)."""
    found = set()
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            found.add(any_sweep(str((Path(directory) / name).relative_to(root))))
    return found


def any_sweep(path: str) -> str:
    """``path`` with the undo trash's sweep id replaced: a killed sweep and its resume
    trash their halves under two sweep ids, an uninterrupted sweep under one."""
    parts = path.split("/")
    for i, part in enumerate(parts[:-1]):
        if part == TRASH_DIR:
            parts[i + 1] = "<sweep>"
            break
    return "/".join(parts)
