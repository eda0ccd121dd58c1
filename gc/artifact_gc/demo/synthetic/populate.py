"""``populate``: bulk-insert a synthetic store into a database that has ZenML's schema."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from artifact_gc.demo.synthetic.context import ProjectContext, Tally
from artifact_gc.demo.synthetic.encoding import is_local, timestamp
from artifact_gc.demo.synthetic.plan import split
from artifact_gc.demo.synthetic.project import generate_project
from artifact_gc.demo.synthetic.shared import insert_project, insert_shared
from artifact_gc.demo.synthetic.spec import SyntheticSpec, SyntheticStore
from artifact_gc.demo.synthetic.writer import RowWriter


def populate(
    url: str,
    spec: SyntheticSpec,
    *,
    progress: Callable[[int], None] | None = None,
    chunk_rows: int = 20_000,
) -> SyntheticStore:
    """Bulk-insert a synthetic store into ``url``, a database that has ZenML's schema.

    ``progress`` is called after each committed chunk with the number of rows it held.
    Run it once per database: names (artifacts, pipelines, runs) are not made unique
    across calls. The ZenML default project and user are reused when their names match.
    """
    _check(spec)
    rng = random.Random(spec.seed)
    now = spec.now or datetime.now(UTC).replace(tzinfo=None)
    now_s = timestamp(now)
    root = spec.store_root.rstrip("/")
    engine = sa.create_engine(url)
    try:
        with RowWriter(engine, progress, now_s, chunk_rows) as writer:
            shared = insert_shared(writer, spec, rng, now_s, root)
            tally = Tally()
            project_ids: dict[str, str] = {}
            per_project = split(spec.versions, len(spec.projects))
            artifacts_total = spec.artifacts or max(1, spec.versions // 8) if spec.versions else 0
            per_project_artifacts = split(artifacts_total, len(spec.projects))
            for name, n_versions, n_artifacts in zip(
                spec.projects, per_project, per_project_artifacts, strict=True
            ):
                project_id = insert_project(writer, name, rng, now_s)
                project_ids[name] = project_id
                ctx = ProjectContext(writer, spec, rng, now, root, shared, project_id, name, tally)
                generate_project(ctx, n_versions, max(n_artifacts, 1 if n_versions else 0))
            counts = dict(writer.counts)
    finally:
        engine.dispose()
    counts.update(tally.counts)
    orphan_file = live_file = None
    orphan_ids, live_ids = frozenset(tally.orphans), frozenset(tally.live)
    if spec.ids_dir is not None:
        orphan_file, live_file = _write_id_files(spec.ids_dir, tally)
        orphan_ids = live_ids = frozenset()
    return SyntheticStore(
        url=url,
        store_root=root,
        artifact_store_id=shared.store_id,
        project_ids=project_ids,
        counts=counts,
        orphan_ids=orphan_ids,
        live_ids=live_ids,
        recent_ids=frozenset(tally.recent),
        preexisting_ids=frozenset(tally.preexisting),
        orphan_ids_file=orphan_file,
        live_ids_file=live_file,
    )


def _check(spec: SyntheticSpec) -> None:
    if spec.versions < 0:
        raise ValueError("versions must be >= 0")
    if not spec.projects:
        raise ValueError("at least one project")
    if spec.write_files and not is_local(spec.store_root):
        raise ValueError("write_files needs a local store_root")
    if not spec.root_in_configuration and not is_local(spec.store_root):
        raise ValueError("a remote store root must be in the component's configuration")


def _write_id_files(ids_dir: Path, tally: Tally) -> tuple[Path, Path]:
    """``orphans.txt`` and ``live.txt`` in ``ids_dir``, one id a line."""
    ids_dir.mkdir(parents=True, exist_ok=True)
    orphan_file = ids_dir / "orphans.txt"
    live_file = ids_dir / "live.txt"
    orphan_file.write_text("".join(f"{i}\n" for i in tally.orphans))
    live_file.write_text("".join(f"{i}\n" for i in tally.live))
    return orphan_file, live_file
