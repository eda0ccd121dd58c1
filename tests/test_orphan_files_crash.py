"""Orphan files under fire: ``gc sweep`` killed with SIGKILL at random points, then
resumed, ends exactly like an uninterrupted sweep, and nothing live is lost meanwhile.

The store is the real ZenML 0.98 store of test_orphan_files.py, with 20 more
step-output directories whose step runs never existed (as a killed pod leaves them),
so that a sweep in batches of 3 has enough batches to be killed in. Each trial draws a
named kill point (after_intent, after_commit, in_files, before_final) and the batch it
fires in from a seeded RNG (``ARTIFACT_GC_CRASH_SEED`` replays a failure).
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from artifact_gc.storage.trash import TRASH_DIR
from artifact_gc.sweep.status import sweep_status
from crash_support import Kill, crash_seed, run_gc, trial_rng
from orphan_support import OrphanStore, any_sweep, backdate, tree
from scenarios.helpers import integrity_problems, restore_tree
from test_orphan_files import _mark, _orphan_pristine, _orphan_rows, orphan_store  # noqa: F401

TRIALS = 10
SWEEP_ARGS = ["--yes", "--batch-size", "3", "--workers", "2"]
POINTS = ("after_intent", "after_commit", "in_files", "before_final")

pytestmark = pytest.mark.slow


def _add_orphans(root: Path, count: int = 20) -> None:
    for i in range(count):
        unit = root / "lost_step" / f"out_{i % 3}" / str(uuid.UUID(int=i + 1)) / "0badc0de"
        unit.mkdir(parents=True)
        (unit / "data.bin").write_bytes(b"o" * (100 + i))


def _live_paths(store: OrphanStore) -> list[str]:
    return [str(p) for p in store.built["traps"].values()]


def test_kill_9_then_resume_ends_like_an_uninterrupted_sweep(
    orphan_store: tuple[OrphanStore, dict[str, Path]], tmp_path: Path  # noqa: F811
) -> None:
    store, traps = orphan_store
    _add_orphans(store.root)
    backdate(store.root, keep_fresh=traps["fresh"].parent)
    manifest = _mark(store, tmp_path / "mark.parquet")
    candidates = {p for p, (s, _, _) in _orphan_rows(manifest).items() if s == "candidate"}
    assert len(candidates) > 20
    batches = -(-len(candidates) // 3)
    saved = tmp_path / "store-before"
    shutil.copytree(store.config_dir, saved, symlinks=True)
    pristine_manifest = tmp_path / "pristine.parquet"
    shutil.copy(manifest, pristine_manifest)

    def sweep(target: Path, kill: Kill | None = None) -> Any:
        return run_gc(["sweep", str(target), "--db", store.db_url, *SWEEP_ARGS], kill=kill,
                      journal=Path(str(target) + ".journal"))

    problems = integrity_problems(store.db_url)
    reference_run = sweep(manifest)
    assert reference_run.returncode == 0, reference_run.stderr
    reference = tree(store.root)
    seed = crash_seed()
    killed_somewhere = 0
    for trial in range(TRIALS):
        rng = trial_rng(seed, "orphan-files-local", trial)
        kill = Kill("point", point=rng.choice(POINTS), hit=rng.randint(1, batches))
        restore_tree(saved, store.config_dir)
        target = tmp_path / f"trial-{trial}.parquet"
        shutil.copy(pristine_manifest, target)
        first = sweep(target, kill)
        where = f"trial {trial} (seed {seed}): {kill.describe()}"
        if first.killed:
            killed_somewhere += 1
            # Mid-way: nothing live is lost, no trap is touched.
            for path in _live_paths(store):
                assert Path(path).exists(), where
            for trap in traps.values():
                assert trap.exists(), where
            assert sweep_status(str(target)).remaining > 0, where
        else:
            assert first.returncode == 0, f"{where}: {first.stderr}"
        resumed = sweep(target)
        assert resumed.returncode == 0, f"{where}: {resumed.stderr}"
        assert tree(store.root) == reference, where
        final = sweep_status(str(target)).as_dict()
        assert final["remaining"] == 0, where
        assert integrity_problems(store.db_url) == problems, where
    assert killed_somewhere >= TRIALS // 2


@pytest.mark.s3
def test_s3_kill_9_then_resume_ends_like_an_uninterrupted_sweep(
    orphan_store: tuple[OrphanStore, dict[str, Path]], moto_s3: Any,  # noqa: F811
    tmp_path: Path
) -> None:
    """The same on S3 (moto): the store moved to a bucket, a grace of 0 (S3 objects
    cannot be back-dated), the bucket and the database restored before each trial."""
    from datetime import timedelta

    from crash_support import restore_bucket
    from s3_support import list_bucket
    from test_orphan_files import _move_to_s3

    store, traps = orphan_store
    _add_orphans(store.root)
    s3_root = _move_to_s3(store, traps, moto_s3)
    client = moto_s3.client()
    pristine_objects = {
        key: client.get_object(Bucket=moto_s3.bucket, Key=key)["Body"].read()
        for key in list_bucket(client, moto_s3.bucket)}
    manifest = _mark(store, tmp_path / "mark.parquet", older_than=timedelta(0),
                     store_roots={store.store_id: s3_root},
                     storage_options=dict(moto_s3.storage_options))
    candidates = {p for p, (s, _, _) in _orphan_rows(manifest).items() if s == "candidate"}
    assert len(candidates) > 20
    batches = -(-len(candidates) // 3)
    saved = tmp_path / "store-before"
    shutil.copytree(store.config_dir, saved, symlinks=True)
    pristine_manifest = tmp_path / "pristine.parquet"
    shutil.copy(manifest, pristine_manifest)
    endpoint = ["--storage-option",
                f"client_kwargs.endpoint_url={moto_s3.endpoint_url}"]

    def sweep(target: Path, kill: Kill | None = None) -> Any:
        return run_gc(["sweep", str(target), "--db", store.db_url, *SWEEP_ARGS, *endpoint],
                      kill=kill, journal=Path(str(target) + ".journal"))

    problems = integrity_problems(store.db_url)
    reference_run = sweep(manifest)
    assert reference_run.returncode == 0, reference_run.stderr
    reference = {any_sweep(k) for k in list_bucket(client, moto_s3.bucket)}
    # The sweep deleted something (its trash copies aside: the undo window is on).
    assert len({k for k in reference if f"/{TRASH_DIR}/" not in k}) < len(pristine_objects)
    live_keys = {k for k in pristine_objects
                 if not any(k == c.removeprefix(f"s3://{moto_s3.bucket}/")
                            or k.startswith(c.removeprefix(f"s3://{moto_s3.bucket}/") + "/")
                            for c in candidates)}
    seed = crash_seed()
    killed_somewhere = 0
    for trial in range(TRIALS):
        rng = trial_rng(seed, "orphan-files-s3", trial)
        kill = Kill("point", point=rng.choice(POINTS), hit=rng.randint(1, batches))
        restore_tree(saved, store.config_dir)
        restore_bucket(client, moto_s3.bucket, pristine_objects)
        target = tmp_path / f"trial-{trial}.parquet"
        shutil.copy(pristine_manifest, target)
        first = sweep(target, kill)
        where = f"S3 trial {trial} (seed {seed}): {kill.describe()}"
        if first.killed:
            killed_somewhere += 1
            assert live_keys <= set(list_bucket(client, moto_s3.bucket)), where
        else:
            assert first.returncode == 0, f"{where}: {first.stderr}"
        resumed = sweep(target)
        assert resumed.returncode == 0, f"{where}: {resumed.stderr}"
        assert {any_sweep(k) for k in list_bucket(client, moto_s3.bucket)} == reference, where
        assert sweep_status(str(target)).remaining == 0, where
        assert integrity_problems(store.db_url) == problems, where
    assert killed_somewhere >= TRIALS // 2
