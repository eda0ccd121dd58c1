"""Run the ``gc`` command line and press Ctrl-C around the publishing of a manifest
(a test runner).

``ARTIFACT_GC_TEST_INTERRUPT_PUBLISH=before`` sends the process SIGINT just before a
manifest is published, ``after`` just after it was (the rename done), ``render``
while the mark's summary is printed. The signal is real; Python raises
KeyboardInterrupt where it is next checked, as with a Ctrl-C at that instant.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

INTERRUPT_PUBLISH_ENV = "ARTIFACT_GC_TEST_INTERRUPT_PUBLISH"


def main() -> None:
    from artifact_gc import cli
    from artifact_gc.cli import mark as mark_cli
    from artifact_gc.manifest import publish

    when = os.environ.get(INTERRUPT_PUBLISH_ENV, "")
    original = publish._publish
    render = mark_cli.render_summary

    def interrupt() -> None:
        os.kill(os.getpid(), signal.SIGINT)

    def publishing(*args: Any, **kwargs: Any) -> None:
        if when == "before":
            interrupt()
        original(*args, **kwargs)
        if when == "after":
            interrupt()

    def rendering(*args: Any, **kwargs: Any) -> None:
        if when == "render":
            interrupt()
        render(*args, **kwargs)

    publish._publish = publishing  # type: ignore[assignment]
    mark_cli.render_summary = rendering  # type: ignore[assignment]
    sys.argv[0] = "gc"
    cli.main()


if __name__ == "__main__":
    main()
