"""Generate a synthetic ZenML store at scale, on the schema ZenML's own migrations create.

    python benchmarks/generate_store.py --versions 1000000 --db /tmp/big.db --root s3://b/p
    python benchmarks/generate_store.py --versions 10000 --db /tmp/s.db --root /tmp/art --files
    python benchmarks/generate_store.py --versions 100000 \\
        --db mysql+pymysql://zenml:<pw>@127.0.0.1:3306/<empty db> --root s3://b/p

By default ZenML (a subprocess with ``ZENML_STORE_URL`` and a throwaway
``ZENML_CONFIG_PATH``) migrates the empty database, which also adds its default rows.
``--from-snapshot`` (SQLite only) replays the shipped schema snapshot instead, without
needing ZenML. The database must be empty (a new SQLite path, or an empty MySQL/MariaDB
database).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from artifact_gc.demo.synthetic import SyntheticSpec, create_sqlite_store, populate


def database_url(db: str) -> str:
    """A SQLAlchemy URL: paths mean SQLite, ``mysql://`` means pymysql (as in ZenML)."""
    if "://" not in db:
        return f"sqlite:///{Path(db).resolve()}"
    if db.startswith("mysql://"):
        return "mysql+pymysql://" + db[len("mysql://") :]
    return db


def zenml_url(url: str) -> str:
    """The same database as ZenML spells it (it rejects SQLAlchemy driver suffixes)."""
    for prefix in ("mysql+pymysql://", "mariadb+pymysql://", "mariadb://"):
        if url.startswith(prefix):
            return "mysql://" + url[len(prefix) :]
    return url


def create_schema_with_zenml(url: str, python: str) -> float:
    """Let ZenML run its migrations on the empty database ``url``; return seconds."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zenml-config-") as config:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
        env.update(
            ZENML_STORE_URL=zenml_url(url),
            ZENML_CONFIG_PATH=config,
            ZENML_ANALYTICS_OPT_IN="false",
            ZENML_LOGGING_VERBOSITY="ERROR",
            ZENML_ENABLE_RICH_TRACEBACK="false",
            AUTO_OPEN_DASHBOARD="false",
        )
        proc = subprocess.run(
            [python, "-c", "from zenml.client import Client; Client().zen_store"],
            env=env,
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        raise SystemExit(f"ZenML could not create the schema:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def _require_empty(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        tables = sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    if tables:
        raise SystemExit(f"{url} is not empty ({len(tables)} tables); use a new database")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, required=True)
    parser.add_argument("--db", required=True, help="SQLite path or database URL")
    parser.add_argument("--root", required=True, help="artifact store root: dir or s3://...")
    parser.add_argument("--files", action="store_true", help="write files (local root)")
    parser.add_argument(
        "--from-snapshot", action="store_true", help="SQLite: replay the schema snapshot"
    )
    parser.add_argument("--orphan-share", type=float, default=0.3)
    parser.add_argument("--links-per-version", type=float, default=3.0)
    parser.add_argument("--projects", default="default", help="comma-separated names")
    parser.add_argument("--age-days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ids-dir", type=Path, help="write orphans.txt and live.txt here")
    parser.add_argument("--zenml-python", default=sys.executable, help="interpreter with zenml")
    args = parser.parse_args(argv)

    url = database_url(args.db)
    sqlite = url.startswith("sqlite")
    if args.from_snapshot:
        if not sqlite:
            parser.error("--from-snapshot is for SQLite only")
        start = time.perf_counter()
        create_sqlite_store(Path(url[len("sqlite:///") :]))
        print(f"schema: snapshot replayed in {time.perf_counter() - start:.2f}s")
    else:
        if sqlite:
            path = Path(url[len("sqlite:///") :])
            if path.exists():
                parser.error(f"{path} exists; give a new path")
            path.parent.mkdir(parents=True, exist_ok=True)
        else:
            _require_empty(url)
        seconds = create_schema_with_zenml(url, args.zenml_python)
        print(f"schema: ZenML migrations in {seconds:.1f}s")

    spec = SyntheticSpec(
        versions=args.versions,
        orphan_share=args.orphan_share,
        links_per_version=args.links_per_version,
        projects=[p.strip() for p in args.projects.split(",") if p.strip()],
        age_days=args.age_days,
        store_root=args.root,
        write_files=args.files,
        seed=args.seed,
        ids_dir=args.ids_dir,
    )
    rows = 0
    last = time.perf_counter()
    start = last

    def progress(n: int) -> None:
        nonlocal rows, last
        rows += n
        now = time.perf_counter()
        if now - last > 5:
            print(f"  {rows:,} rows, {rows / (now - start):,.0f} rows/s", file=sys.stderr)
            last = now

    store = populate(url, spec, progress=progress)
    elapsed = time.perf_counter() - start
    counts = store.counts
    print(
        f"populated {counts['versions']:,} versions ({counts['orphans']:,} orphans) in "
        f"{elapsed:.1f}s: {rows:,} rows, {rows / elapsed:,.0f} rows/s, "
        f"{counts['versions'] / elapsed:,.0f} versions/s"
    )
    links = {
        t: counts.get(t, 0)
        for t in (
            "step_run_output_artifact",
            "step_run_input_artifact",
            "model_versions_artifacts",
            "pipeline_run_output",
        )
    }
    print(f"links: {links} ({sum(links.values()) / max(counts['versions'], 1):.2f} per version)")
    print(f"store: {store.url}  root: {store.store_root}")
    print(f"artifact store component: {store.artifact_store_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
