"""gc demo runs the whole cycle on a sample store and proves its own result."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from artifact_gc.cli import cli
from artifact_gc.demo.run import run_demo


def test_demo_cycle_deletes_exactly_the_candidates(tmp_path: Path) -> None:
    report = run_demo(tmp_path / "demo", versions=300)
    assert report.ok
    candidates = report.mark.info.counts["candidate"]
    assert candidates > 0
    assert len(report.sweep.deleted) == candidates
    assert report.after.files < report.before.files
    assert report.before.bytes - report.after.bytes == report.sweep.bytes_freed
    db = sqlite3.connect(report.db_url.removeprefix("sqlite:///"))
    remaining = {row[0] for row in db.execute("SELECT id FROM artifact_version")}
    db.close()
    assert not remaining & set(report.sweep.deleted)
    assert len(remaining) == report.versions - candidates
    assert report.zenml_would_delete.get("model_link", 0) > 0


def test_demo_cli(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "d"), "--versions", "200",
                                      "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True
    assert data["sweep"]["deleted"] == data["mark"]["candidate"]
    text = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "e"), "--versions", "200"])
    assert text.exit_code == 0, text.output
    assert "4. Verified:" in text.output
    busy = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "e")])
    assert busy.exit_code == 2 and "not empty" in busy.output
