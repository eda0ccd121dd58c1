"""Run the ``gc`` command line with the sweep's test hooks (a test runner).

``python tests/hooked_gc.py ARGS...`` is ``gc ARGS...``, the real command line, with a
``SweepHooks`` built from ``ARTIFACT_GC_TEST_KILL_AT`` / ``ARTIFACT_GC_TEST_PAUSE_AT``
(tests/sweep_hooks.py) handed to ``gc sweep`` through click's context object. The
library itself never reads those variables.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from artifact_gc.cli import OWNS_PROCESS, cli
    from artifact_gc.cli.sweep import SWEEP_HOOKS
    from sweep_hooks import EnvironmentHooks

    cli.main(args=sys.argv[1:], prog_name="gc",
             obj={SWEEP_HOOKS: EnvironmentHooks(os.environ), OWNS_PROCESS: True})


if __name__ == "__main__":
    main()
