"""Run the ``gc`` command line with faulty storage underneath (a test runner).

``python tests/faulty_gc.py ARGS...`` is ``gc ARGS...`` in a process where fsspec's
``s3`` and/or ``file`` protocols are the fault-injecting wrappers of
tests/s3_support.py and tests/faulty_fs.py, so the library needs no test hook: the
sweep opens its artifact store through ``fsspec.url_to_fs`` as always. The plan comes
from ``$ARTIFACT_GC_TEST_FAULTS`` (JSON: ``{"s3": {...Faults}, "local": {...LocalFaults},
"counts": PATH}``); the faults really raised are written to ``counts`` at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from pathlib import Path
from typing import Any

FAULTS_ENV = "ARTIFACT_GC_TEST_FAULTS"


def _install(spec: dict[str, Any]) -> list[Any]:
    plans: list[Any] = []
    if "s3" in spec:
        from s3_support import Faults, register_faulty_s3

        s3 = spec["s3"]
        faults = Faults(rate=s3.get("rate", 0.0), key_rate=s3.get("key_rate", 0.0),
                        seed=s3.get("seed", 0), denied=tuple(s3.get("denied", ())))
        register_faulty_s3(faults)
        plans.append(faults)
    if "local" in spec:
        from faulty_fs import LocalFaults, register_flaky_local

        local = spec["local"]
        local_faults = LocalFaults(rate=local.get("rate", 0.0), seed=local.get("seed", 0),
                                   denied=tuple(local.get("denied", ())),
                                   scope=local.get("scope"))
        register_flaky_local(local_faults)
        plans.append(local_faults)
    return plans


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    spec: dict[str, Any] = json.loads(os.environ.get(FAULTS_ENV) or "{}")
    plans = _install(spec)
    counts = spec.get("counts")

    def dump() -> None:
        if counts:
            raised: dict[str, int] = {}
            for plan in plans:
                for kind, n in plan.raised.items():
                    raised[kind] = raised.get(kind, 0) + n
            Path(counts).write_text(json.dumps(raised))

    atexit.register(dump)
    from artifact_gc.cli import main as gc_main

    sys.argv = ["gc", *sys.argv[1:]]
    gc_main()


if __name__ == "__main__":
    main()
