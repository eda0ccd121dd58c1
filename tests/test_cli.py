"""Every command answers --help; the top-level help lists the exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from artifact_gc.cli import COMMANDS, cli


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: cli {command}" in result.output or f"Usage: gc {command}" in result.output
    assert len(result.output.splitlines()) > 5


def test_top_level_help_lists_commands_and_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output
    assert "Exit codes:" in result.output and "manifest was refused" in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["nope"])
    assert result.exit_code == 2


def test_both_console_scripts_run_and_help_imports_no_heavy_library() -> None:
    bin_dir = Path(sys.executable).parent
    for name in ("gc", "artifact-gc"):
        done = subprocess.run([str(bin_dir / name), "--version"], capture_output=True,
                              text=True, check=True)
        assert "artifact-gc" in done.stdout
    probe = (
        "import sys; from artifact_gc.cli import cli; "
        "cli.main(['--help'], standalone_mode=False); "
        "print(sorted(m for m in ('duckdb', 'pyarrow', 'sqlalchemy', 'fsspec') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_unexpected_errors_never_print_credentials_carried_in_urls() -> None:
    """A library may put a credential in its error text (gcsfs puts a raw token in the
    token-check URL it reports); the CLI's last line of defence prints it scrubbed."""
    from artifact_gc.cli import one_line

    token_url = "401 for https://127.0.0.1/tokeninfo?access_token=ya29.SECRET-1&x=1"
    assert "SECRET" not in one_line(token_url)
    assert one_line(token_url).endswith("access_token=***&x=1")
    assert "hunter2" not in one_line("no route to mysql+pymysql://root:hunter2@127.0.0.1/z")
    assert "sig=***&se=1" in one_line("GET https://127.0.0.1/c/b?sv=1&sig=abc%2BDEF&se=1")
