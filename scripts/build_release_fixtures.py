"""Build the release fixtures: one small store per ZenML release, made by that release.

For each release, this creates (or reuses) a venv with ``zenml[local]==X`` in the cache
dir, runs ``release_fixture_store.py`` in it against a throwaway config dir, and packs
the SQLite store and its tiny local artifact store into
``tests/fixtures/releases/<X>/store.tar.gz`` beside ``expected.json`` (what a correct GC
decides, by scenario). Paths inside are absolute to the build dir, recorded as
``config_dir`` in expected.json; tests unpack the archive and rewrite them.

    python scripts/build_release_fixtures.py 0.70.0 0.80.0
    ARTIFACT_GC_CACHE=/somewhere python scripts/build_release_fixtures.py 0.90.0

A venv takes one to two minutes to create; a store, one to two more.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "releases"
BUILDER = Path(__file__).resolve().parent / "release_fixture_store.py"


def cache_dir() -> Path:
    return Path(os.environ.get("ARTIFACT_GC_CACHE") or Path.home() / ".cache" / "artifact-gc")


def release_python(release: str, cache: Path | None = None) -> Path:
    """The interpreter of a venv with ``zenml[local]==release``; created once."""
    venv = (cache or cache_dir()) / f"zenml-{release}"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    # Two test processes may ask for the same release at once: the second waits for the
    # first's install instead of clearing the venv under it.
    with open(venv.parent / f"zenml-{release}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return python
        subprocess.run([sys.executable if sys.version_info[:2] == (3, 11) else "python3.11",
                        "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q",
                        f"zenml[local]=={release}"], check=True)
        marker.write_text(release + "\n")
    return python


def zenml_env(config_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update(ZENML_CONFIG_PATH=str(config_dir), ZENML_ANALYTICS_OPT_IN="false")
    return env


def build(release: str, out_dir: Path = FIXTURES) -> Path:
    python = release_python(release)
    target = out_dir / release
    with tempfile.TemporaryDirectory(prefix=f"zenml-{release}-") as tmp:
        config = Path(tmp) / "config"
        config.mkdir()
        expected = Path(tmp) / "expected.json"
        subprocess.run([str(python), str(BUILDER), str(expected)], env=zenml_env(config),
                       check=True)
        db = config / "local_stores" / "default_zen_store" / "zenml.db"
        subprocess.run([sys.executable, "-c",
                        f"import sqlite3; c = sqlite3.connect({str(db)!r}); "
                        "c.execute('VACUUM'); c.close()"], check=True)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        with tarfile.open(target / "store.tar.gz", "w:gz") as archive:
            archive.add(config, arcname="config")
        shutil.copy(expected, target / "expected.json")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("releases", nargs="+", metavar="RELEASE")
    args = parser.parse_args(argv)
    for release in args.releases:
        print(f"{release}: {build(release)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
