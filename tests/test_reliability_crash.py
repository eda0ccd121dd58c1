"""Crash consistency, randomized (invariants 5, 6 and 8), on two backends.

``gc sweep`` and ``gc mark`` run as real subprocesses and are killed with SIGKILL at
random instants drawn from a seeded RNG (``ARTIFACT_GC_CRASH_SEED``, printed in every
assertion message; one RNG per trial, so the node id ``...[7]`` with the same seed
replays trial 7 on its own).

- Sweep, SQLite + local files, and sweep, MariaDB (ZenML's own migrations) + S3 (moto):
  half the kills at a named crash point after a random number of hits, half from
  outside after a random delay (anchored on the first journal segment, so that they
  land between the named points while batches are in flight), and some resumes killed
  again. After every kill nothing reachable is lost and no row dangles; after the
  resume the store is exactly what an uninterrupted sweep of an identical copy left.
- Mark, on both: whatever a killed mark leaves at ``--out`` is refused by the sweep
  (exit 5, or 2) and changes nothing; a mark that completed is accepted.

The stores are synthetic (ZenML 0.98.0's schema, realistic references, visualizations,
run metadata, tags, a live version nested inside an orphan's directory), small, and
restored per trial from a pristine twin. ``ARTIFACT_GC_SOAK=N`` runs N times the trials.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from artifact_gc.demo.synthetic import SyntheticSpec, build_demo_store, populate
from crash_support import (
    CRASH_SEED_ENV,
    Footprints,
    Kill,
    MotoServer,
    Run,
    crash_seed,
    draw_kill,
    restore_bucket,
    restore_database,
    rows_snapshot,
    run_gc,
    snapshot_differences,
    sync_tree,
    table_checksums,
    tree_differences,
    trial_rng,
)
from reliability import lost, record, trials
from s3_support import UNMANAGED, list_bucket, object_plan, upload
from scenarios.helpers import (
    BUILD_ENV,
    integrity_problems,
    list_tree,
    mariadb_available,
    mariadb_clone_database,
    mariadb_create_database,
    mariadb_drop_database,
    require_server,
    table_counts,
    to_sqlalchemy_url,
)
from sweep_support import version_ids

SEED = crash_seed()
#: 24 trials per backend, so that at least 20 of them kill a sweep mid-way even where a
#: few timed kills come after the sweep has finished (those count apart).
SWEEP_TRIALS = trials(24)
MARK_TRIALS = trials(5)
# No undo window: these worlds compare whole listings (the S3 one an unversioned bucket,
# where the undo would copy into a trash prefix named by sweep id). A sweep killed with
# the undo on is covered by test_sweep_crash.py; restore and trash empty under SIGKILL
# by test_undo_crash.py.
SWEEP_OPTIONS = ["--yes", "--json", "--workers", "2", "--no-undo"]
GRACE = ["--older-than", "1d"]
UNMANAGED_LOCAL = {"logs/pipelines/run-1.log": b"log line\n",
                   "code_uploads/abc123.tar.gz": b"\x1f\x8b code\n"}


@dataclass
class World:
    """One backend's store at a fixed location, its pristine twin, a manifest of it,
    and the end state of an uninterrupted sweep of that manifest."""

    name: str  # "sqlite+local" or "mariadb+s3"
    db_url: str  # SQLAlchemy URL
    storage: list[str]  # --storage-option arguments for gc
    env: dict[str, str]
    #: Make the store pristine again; given the listing the store is known to have
    #: (None: look), it may skip listing it.
    restore: Callable[[dict[str, int] | None], object]
    listing: Callable[[], dict[str, int]]  # the artifact store, files (and dirs)
    footprint_base: str
    #: Small batches: 60 to 150 candidates make 10 to 20 batches per sweep.
    batch_size: int = 8
    manifest: Path = Path()
    footprints: Footprints | None = None
    before_db: dict[str, Any] | None = None
    before_listing: dict[str, int] | None = None
    expected_db: dict[str, Any] | None = None
    expected_listing: dict[str, int] | None = None
    batches: int = 1
    startup: float = 1.0
    work: float = 1.0
    mark_seconds: float = 1.0
    #: The listing of the store as a passing check left it (saves a listing).
    known_listing: dict[str, int] | None = None

    def reset(self) -> None:
        known, self.known_listing = self.known_listing, None
        self.restore(known)

    def sweep_args(self, manifest: Path) -> list[str]:
        return ["sweep", str(manifest), "--db", self.db_url, *SWEEP_OPTIONS,
                "--batch-size", str(self.batch_size), *self.storage]

    def mark_args(self, out: Path) -> list[str]:
        return ["mark", "--db", self.db_url, *GRACE, "--sizes", "--out", str(out), "--json",
                *self.storage]

    def prepare(self, base: Path) -> None:
        """Mark once, sweep a copy uninterrupted, remember its end state, restore."""
        self.before_db = rows_snapshot(self.db_url)
        self.before_listing = self.listing()
        self.manifest = base / "pristine-mark.parquet"
        marked = run_gc(self.mark_args(self.manifest), self.env)
        assert marked.returncode == 0, marked.stderr[-3000:]
        self.mark_seconds = marked.seconds  # lowered by every mark trial that finishes
        self.footprints = Footprints.read(self.manifest, self.footprint_base)
        assert len(self.footprints.candidates) >= 60, "too few candidates for many batches"
        self.batches = math.ceil(len(self.footprints.candidates) / self.batch_size)
        reference = base / "reference"
        reference.mkdir()
        manifest = reference / "mark.parquet"
        shutil.copy(self.manifest, manifest)
        run = run_gc(self.sweep_args(manifest), self.env,
                     journal=Path(str(manifest) + ".journal"))
        assert run.returncode == 0, run.stderr[-3000:]
        summary = json.loads(run.stdout)["summary"]
        assert summary["deleted"] > 0 and summary["failed"] == 0, summary
        assert run.work_started is not None
        self.startup, self.work = run.work_started, max(0.05, run.seconds - run.work_started)
        self.expected_db, self.expected_listing = rows_snapshot(self.db_url), self.listing()
        # The raw snapshot sees every table and row that SQLAlchemy sees.
        assert {t: len(rows) for t, rows in self.expected_db.items()} == \
            table_counts(self.db_url)
        assert integrity_problems(self.db_url) == []
        self.restore(None)
        assert rows_snapshot(self.db_url) == self.before_db
        assert self.listing() == self.before_listing


# ---------------------------------------------------------------------------
# SQLite + local files
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sqlite_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    base = tmp_path_factory.mktemp("crash-sqlite")
    live, pristine = base / "store", base / "store.pristine"
    store = build_demo_store(live, versions=500, seed=7)
    root = Path(store.store_root)
    for rel, body in UNMANAGED_LOCAL.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(body)
    shutil.copytree(live, pristine, symlinks=True)
    world = World(
        name="sqlite+local", db_url=store.url, storage=[], env={},
        restore=lambda _known: sync_tree(pristine, live),
        listing=lambda: list_tree(root, include_dirs=True),
        footprint_base=str(root),
    )
    world.prepare(base)
    return world


# ---------------------------------------------------------------------------
# MariaDB (ZenML's own migrations) + S3 (moto)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    try:
        server = MotoServer.start()
    except ImportError as exc:  # pragma: no cover - test extra missing
        require_server(f"moto[server] is not installed: {exc}")
        raise
    try:
        yield server
    finally:
        server.stop()


def _migrate(url: str, config_dir: Path) -> None:
    """Let ZenML 0.98.0 create its schema (and default rows) in ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update(BUILD_ENV, ZENML_CONFIG_PATH=str(config_dir), ZENML_STORE_URL=url)
    proc = subprocess.run(
        [sys.executable, "-c", "from zenml.client import Client; Client().zen_store"],
        env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"ZenML could not migrate {url}:\n{proc.stderr[-4000:]}"


@pytest.fixture(scope="module")
def mariadb_world(tmp_path_factory: pytest.TempPathFactory, moto_server: MotoServer
                  ) -> Iterator[World]:
    why = mariadb_available()
    if why:
        require_server(why)
    base = tmp_path_factory.mktemp("crash-mariadb")
    suffix = uuid.uuid4().hex[:10]
    pristine_db, work_db = f"gc_crash_pristine_{suffix}", f"gc_crash_work_{suffix}"
    client = moto_server.client()
    bucket = f"gc-crash-{suffix}"
    client.create_bucket(Bucket=bucket)
    try:
        pristine_url = to_sqlalchemy_url(mariadb_create_database(pristine_db))
        _migrate(pristine_url.replace("mysql+pymysql://", "mysql://"), base / "zenml-config")
        populate(pristine_url, SyntheticSpec(
            versions=240, store_root=f"s3://{bucket}/zenml-store", recent_share=0.02,
            seed=11))
        objects = dict(object_plan(pristine_url, bucket))
        objects.update({f"zenml-store/{k}": b"keep me\n" for k in UNMANAGED})
        upload(client, bucket, objects.items(), threads=16)
        # The swept database keeps its name for good: a manifest names its database.
        work_url = to_sqlalchemy_url(mariadb_create_database(work_db))
        mariadb_clone_database(pristine_db, work_db)
        sums = table_checksums(pristine_db)

        def restore(known: dict[str, int] | None) -> None:
            restore_database(pristine_db, work_db, sums)
            restore_bucket(client, bucket, objects, known)

        world = World(
            name="mariadb+s3", db_url=work_url, storage=moto_server.storage_option(),
            env=moto_server.env(), restore=restore,
            listing=lambda: list_bucket(client, bucket),
            footprint_base=f"s3://{bucket}", batch_size=6,
        )
        world.prepare(base)
        yield world
    finally:
        mariadb_drop_database(work_db)
        mariadb_drop_database(pristine_db)


# ---------------------------------------------------------------------------
# The sweep trials
# ---------------------------------------------------------------------------


def _tag(world: World, trial: int, runs: list[Run]) -> str:
    kills = " then ".join(r.kill.describe() if r.kill else "resume" for r in runs)
    return f"[{world.name} sweep trial {trial}, {CRASH_SEED_ENV}={SEED}: {kills or '-'}]"


def _check_midway(world: World, tag: str) -> None:
    """After a kill: whatever the crash left, nothing live is lost and nothing dangles
    (files of versions whose rows are gone may still be there: the resume takes them)."""
    assert world.footprints is not None and world.before_listing is not None
    present = version_ids(world.db_url)
    missing = world.footprints.kept - present
    assert lost("reachable versions lost", len(missing)) == 0, f"{tag} {sorted(missing)[:5]}"
    dangling = integrity_problems(world.db_url)
    assert lost("dangling rows", len(dangling)) == 0, f"{tag} {dangling[:5]}"
    deleted = world.footprints.candidates - present
    live_lost, _ = world.footprints.file_losses(world.before_listing, world.listing(), deleted)
    assert lost("live files lost", len(live_lost)) == 0, f"{tag} {live_lost[:5]}"


def _sweep_trial(world: World, trial: int, work_dir: Path) -> None:
    assert world.footprints is not None and world.before_listing is not None
    rng = trial_rng(SEED, world.name, trial)
    world.reset()
    manifest = work_dir / "mark.parquet"
    shutil.copy(world.manifest, manifest)
    journal = Path(str(manifest) + ".journal")
    # Named points and timed kills in turn; the point, hit count or delay at random.
    kills = [draw_kill(rng, world.batches, world.startup, world.work, named=trial % 2 == 0)]
    if rng.random() < 0.3:
        # A double crash: the resume is killed too, somewhere in what is left.
        kills.append(draw_kill(rng, max(1, world.batches // 2), world.startup,
                               world.work / 2, named=rng.random() < 0.5))
    runs: list[Run] = []
    for kill in kills:
        run = run_gc(world.sweep_args(manifest), world.env, kill=kill, journal=journal)
        runs.append(run)
        if not run.killed:
            assert run.returncode == 0, f"{_tag(world, trial, runs)}\n{run.stderr[-3000:]}"
            if len(runs) == 1 and run.work_started is not None:
                # A whole sweep ran faster than the reference (which paid for cold
                # caches, or a busier machine): later timed kills aim shorter.
                world.work = min(world.work, run.seconds - run.work_started)
            break
        record("faults injected", f"SIGKILL gc sweep, {world.name} ({kill.kind})")
        _check_midway(world, _tag(world, trial, runs))
    if runs[-1].killed:
        resumed = run_gc(world.sweep_args(manifest), world.env, journal=journal)
        runs.append(resumed)
        assert resumed.returncode == 0, f"{_tag(world, trial, runs)}\n{resumed.stderr[-3000:]}"
    tag = _tag(world, trial, runs)

    present = version_ids(world.db_url)
    missing = world.footprints.kept - present
    assert lost("reachable versions lost", len(missing)) == 0, f"{tag} {sorted(missing)[:5]}"
    dangling = integrity_problems(world.db_url)
    assert lost("dangling rows", len(dangling)) == 0, f"{tag} {dangling[:5]}"
    listing = world.listing()
    deleted = world.footprints.candidates - present
    live_lost, leaked = world.footprints.file_losses(world.before_listing, listing, deleted)
    assert lost("live files lost", len(live_lost)) == 0, f"{tag} {live_lost[:5]}"
    assert lost("leaked files", len(leaked)) == 0, f"{tag} {leaked[:5]}"
    assert world.expected_db is not None and world.expected_listing is not None
    tables = snapshot_differences(rows_snapshot(world.db_url), world.expected_db)
    paths = tree_differences(listing, world.expected_listing)
    assert lost("end states unlike an uninterrupted sweep", len(tables) + len(paths)) == 0, (
        f"{tag} tables {tables[:5]}, paths {paths[:5]}")
    world.known_listing = listing
    killed = any(r.killed for r in runs)
    record("crash trials", f"sweep {world.name}" if killed
           else f"sweep {world.name}, finished before kill")


@pytest.mark.parametrize("trial", range(SWEEP_TRIALS))
def test_sqlite_sweep_killed_at_random_resumes_like_uninterrupted(
    sqlite_world: World, trial: int, tmp_path: Path
) -> None:
    _sweep_trial(sqlite_world, trial, tmp_path)


@pytest.mark.mariadb
@pytest.mark.s3
@pytest.mark.parametrize("trial", range(SWEEP_TRIALS))
def test_mariadb_s3_sweep_killed_at_random_resumes_like_uninterrupted(
    mariadb_world: World, trial: int, tmp_path: Path
) -> None:
    _sweep_trial(mariadb_world, trial, tmp_path)


# ---------------------------------------------------------------------------
# The mark trials
# ---------------------------------------------------------------------------


def _mark_trial(world: World, trial: int, work_dir: Path) -> None:
    """Kill a mark at random; sweep whatever it left; nothing may change."""
    assert world.footprints is not None
    rng = trial_rng(SEED, f"mark {world.name}", trial)
    world.reset()
    out_dir = work_dir / "out"
    out_dir.mkdir()
    out = out_dir / "mark.parquet"
    # Kinds of kill in turn, instants at random: while the manifest's temporary file
    # is being written (it lives for milliseconds: inotify says when it appears), late
    # in the mark (measuring sizes, writing, renaming), anywhere.
    if trial % 3 == 0:
        kill = Kill("timed", anchor="file", delay=rng.choice([0.0, rng.uniform(0, 0.005)]))
    else:
        share = rng.uniform(0.5, 1.0) if trial % 3 == 1 else rng.uniform(0, 0.9)
        kill = Kill("timed", anchor="start", delay=world.mark_seconds * share)
    # With --sizes the rows are measured, then written in one go; without, they are
    # streamed to the file part by part: two ways of writing the manifest.
    args = world.mark_args(out)
    if rng.random() < 0.5:
        args.remove("--sizes")
    run = run_gc(args, world.env, kill=kill, watch=out_dir)
    tag = (f"[{world.name} mark trial {trial}, {CRASH_SEED_ENV}={SEED}: {kill.describe()}, "
           f"{'with' if '--sizes' in args else 'without'} --sizes, exit {run.returncode}]")
    if not run.killed:
        assert run.returncode == 0, f"{tag}\n{run.stderr[-3000:]}"
        # The machine got faster (or the first mark paid for cold caches): aim shorter.
        world.mark_seconds = min(world.mark_seconds, run.seconds)
    left = sorted(os.listdir(out_dir))
    assert set(left) <= {"mark.parquet"} | {n for n in left if ".partial" in n}, f"{tag} {left}"
    outcomes = []
    for name in left or ["mark.parquet"]:
        path = out_dir / name
        if name == "mark.parquet" and path.exists():
            # Only a mark that got to the end renames its file into place; such a
            # manifest is whole: the sweep takes it, and it names the right candidates.
            assert Footprints.read(path, world.footprint_base).candidates == \
                world.footprints.candidates, tag
            check = run_gc([*world.sweep_args(path), "--dry-run"], world.env)
            assert check.returncode == 0, f"{tag} complete manifest refused:\n{check.stderr}"
            outcomes.append("complete manifest")
            continue
        # A real sweep, not a dry run: had it taken the file, it would have deleted.
        sweep = run_gc(world.sweep_args(path), world.env)
        outcomes.append("partial file" if path.exists() else "nothing")
        assert sweep.returncode in (2, 5), (
            f"{tag} {name}: gc sweep exit {sweep.returncode}, not refused:\n{sweep.stderr}")
        tables = snapshot_differences(rows_snapshot(world.db_url), world.before_db or {})
        assert world.before_listing is not None
        listing = world.listing()
        live_lost, _ = world.footprints.file_losses(world.before_listing, listing, set())
        changed = tree_differences(listing, world.before_listing)
        assert lost("live files lost", len(live_lost)) == 0, f"{tag} {live_lost[:5]}"
        assert lost("changes made by a refused manifest", len(tables) + len(changed)) == 0, (
            f"{tag} tables {tables[:5]} paths {changed[:5]}")
        world.known_listing = listing
    if run.killed:
        record("faults injected", f"SIGKILL gc mark, {world.name}")
    key = "mark sqlite" if world.name.startswith("sqlite") else "mark mariadb"
    record("crash trials", key if run.killed else f"{key}, finished before kill")
    for outcome in outcomes:
        if outcome != "complete manifest":
            record("bad inputs tried", f"what a killed mark left: {outcome}")


@pytest.mark.parametrize("trial", range(MARK_TRIALS))
def test_sqlite_killed_mark_leaves_nothing_sweepable(
    sqlite_world: World, trial: int, tmp_path: Path
) -> None:
    _mark_trial(sqlite_world, trial, tmp_path)


@pytest.mark.mariadb
@pytest.mark.s3
@pytest.mark.parametrize("trial", range(MARK_TRIALS))
def test_mariadb_killed_mark_leaves_nothing_sweepable(
    mariadb_world: World, trial: int, tmp_path: Path
) -> None:
    _mark_trial(mariadb_world, trial, tmp_path)
