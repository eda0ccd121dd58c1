"""Bytes reclaimed on one real ZenML 0.98 store: ``zenml artifact prune -y``, against
``gc mark`` + ``gc sweep`` without ``--orphan-files``, against with it.

    python benchmarks/bench_orphan_reclaim.py [--store CONFIG_DIR] [--readme]

The store is built by tests/orphan_zenml.py (real pipelines; a version deleted with
``delete_artifact_version``'s default, runs deleted with ``delete_pipeline_run``, a
failed step, a step killed with SIGKILL, ``zenml artifact prune --only-metadata``),
unless ``--store`` names one built before. Each side runs on a fresh copy restored at
the same absolute path (ZenML's URIs are absolute). The store was just built, so the
marks use ``--older-than 0s``; every orphan file is old enough in a real store. The
sweeps use ``--no-undo``: with the undo window (the default) the same files are moved
into the store's trash and their bytes are freed when ``gc trash empty`` purges them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from harness import VENV_BIN, markdown_table, write_section  # noqa: E402

README = Path(__file__).with_name("README.md")
BUILD = Path(__file__).parent.parent / "tests" / "orphan_zenml.py"


def zenml_env(config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update({"ZENML_CONFIG_PATH": str(config), "ZENML_ANALYTICS_OPT_IN": "false",
                "AUTO_OPEN_DASHBOARD": "false"})
    return env


def du(root: Path) -> tuple[int, int]:
    files = nbytes = 0
    for directory, _dirs, names in os.walk(root):
        for name in names:
            files += 1
            nbytes += os.lstat(os.path.join(directory, name)).st_size
    return files, nbytes


def gc(*args: str) -> str:
    proc = subprocess.run([str(VENV_BIN / "gc"), *args], capture_output=True, text=True,
                          check=False, env={k: v for k, v in os.environ.items()
                                            if not k.startswith("ZENML_")})
    if proc.returncode != 0:
        raise RuntimeError(f"gc {args[0]} failed:\n{proc.stderr[-3000:]}")
    return proc.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="a config dir built by orphan_zenml.py")
    parser.add_argument("--work", type=Path, default=Path("/tmp/artifact-gc-reclaim"))
    parser.add_argument("--readme", action="store_true")
    args = parser.parse_args(argv)
    live = args.work / "store"
    pristine = args.work / "pristine"
    if args.store is None:
        shutil.rmtree(args.work, ignore_errors=True)
        live.mkdir(parents=True)
        proc = subprocess.run([sys.executable, str(BUILD), "build"], cwd=live,
                              env=zenml_env(live), capture_output=True, text=True,
                              check=True)
        built = json.loads(proc.stdout.strip().splitlines()[-1])
        shutil.copytree(live, pristine, symlinks=True)
    else:
        live = args.store
        pristine = args.work / "pristine"
        if not pristine.exists():
            shutil.copytree(live, pristine, symlinks=True)
        built = json.loads((live / "out.json").read_text().strip().splitlines()[-1])
    root = Path(built["root"])
    db = f"sqlite:///{live}/local_stores/default_zen_store/zenml.db"

    def restore() -> tuple[int, int]:
        shutil.rmtree(live)
        shutil.copytree(pristine, live, symlinks=True)
        return du(root)

    rows = []
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    files0, bytes0 = restore()
    subprocess.run([str(VENV_BIN / "zenml"), "artifact", "prune", "-y"], env=zenml_env(live),
                   capture_output=True, text=True, check=False)
    files, nbytes = du(root)
    rows.append(["`zenml artifact prune -y`", f"{files0 - files}", f"{bytes0 - nbytes:,}"])
    for label, extra in (("`gc mark` + `gc sweep`", []),
                         ("`gc mark --orphan-files` + `gc sweep`", ["--orphan-files"]),
                         ("`gc mark --orphan-files --orphan-code-uploads` + `gc sweep`",
                          ["--orphan-files", "--orphan-code-uploads"])):
        restore()
        manifest = args.work / "mark.parquet"
        manifest.unlink(missing_ok=True)
        shutil.rmtree(str(manifest) + ".journal", ignore_errors=True)
        gc("mark", "--db", db, "--out", str(manifest), "--older-than", "0s", *extra, "--json")
        gc("sweep", str(manifest), "--db", db, "--yes", "--no-undo", "--json")
        files, nbytes = du(root)
        rows.append([label, f"{files0 - files}", f"{bytes0 - nbytes:,}"])
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join([
        "### Bytes reclaimed on one real ZenML 0.98 store", "",
        f"A store after ordinary use ({files0} files, {bytes0:,} bytes): a version deleted "
        "with `delete_artifact_version`'s default, runs deleted with `delete_pipeline_run`, "
        "a failed step, a step killed with SIGKILL, `zenml artifact prune --only-metadata`, "
        "a run and its snapshot deleted (its code archive stays).",
        "", markdown_table(["command", "files reclaimed", "bytes reclaimed"], rows), "",
        f"`gc sweep --no-undo` (with the undo window, the default, the same files go to "
        "the store's trash first, and their bytes are freed by `gc trash empty`). Load "
        f"average (1, 5, 15 min) before {load_before}, after {load}; measured {when} with "
        "`python benchmarks/bench_orphan_reclaim.py`.",
    ])
    print(body)
    if args.readme:
        write_section(README, "orphan-reclaim", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
