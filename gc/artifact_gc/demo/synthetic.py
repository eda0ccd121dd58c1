"""Synthetic ZenML stores at scale, on ZenML's real schema, without ZenML at runtime.

``create_sqlite_store`` replays the schema snapshot that ``scripts/snapshot_zenml_schema.py``
took from a store made by ZenML 0.98.0 itself. ``populate`` bulk-inserts a realistic,
foreign-key-consistent store into any database that has that schema (the snapshot, or
ZenML's own migrations on SQLite or MySQL/MariaDB).

What a populated store holds, per project:

- live versions, each kept alive by at least one reference: a step output link, step
  input links (manual and preexisting versions loaded by steps), a model link and
  nothing else (the case ``zenml artifact prune`` gets wrong), or only a dashed id in a
  ``step_configuration.config`` ``external_input_artifacts`` entry;
- orphans: versions with no reference of any kind (no row in any table with a foreign
  key into ``artifact_version`` other than their own ``artifact_visualization`` rows, no
  ``tag_resource`` row, no mention in JSON). They may own ``run_metadata`` rows through
  ``run_metadata_resource``, as real versions do, and those die with them. Their step
  runs were deleted, so their URIs name step runs that no longer exist.

Rows are generated column-generically: tables are reflected, meaningful columns are set
explicitly, and every other NOT NULL column gets a plausible value for its type.
"""

from __future__ import annotations

import base64
import json
import os
import random
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ZENML_VERSION = "0.98.0"
SCHEMA_RESOURCE = f"zenml-{ZENML_VERSION}-sqlite.sql"

#: ZenML's storage format for naive UTC datetimes.
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

Row = tuple[Any, ...]

_STEPS: dict[str, tuple[str, ...]] = {
    "load_data": ("raw_data", "data_stats"),
    "clean_data": ("clean_data", "cleaning_report"),
    "split_data": ("train_set", "test_set"),
    "featurize": ("features", "feature_schema"),
    "train_model": ("model", "training_metrics"),
    "evaluate_model": ("evaluation", "confusion_matrix"),
    "export_model": ("model_package", "model_card"),
    "batch_predict": ("predictions", "drift_report"),
}
_STEP_NAMES = tuple(_STEPS)
_PIPELINES = (
    "training_pipeline",
    "feature_pipeline",
    "batch_inference",
    "evaluation_pipeline",
    "data_quality",
)
_TAGS = ("production", "baseline", "keep", "experiment", "golden", "reviewed")
_COLORS = ("grey", "purple", "red", "green", "yellow", "orange", "lime", "teal", "blue")


def _source(module: str, attribute: str, kind: str) -> str:
    return json.dumps(
        {"module": module, "attribute": attribute, "type": kind}, separators=(",", ":")
    )


#: (artifact type, materializer source, data type source, visualization type)
_KINDS: tuple[tuple[str, str, str, str], ...] = (
    (
        "DataArtifact",
        _source("zenml.materializers.pandas_materializer", "PandasMaterializer", "internal"),
        _source("pandas.core.frame", "DataFrame", "distribution_package"),
        "csv",
    ),
    (
        "BaseArtifact",
        _source(
            "zenml.materializers.built_in_materializer", "BuiltInContainerMaterializer", "internal"
        ),
        _source("builtins", "dict", "builtin"),
        "json",
    ),
    (
        "ModelArtifact",
        _source(
            "zenml.materializers.cloudpickle_materializer", "CloudpickleMaterializer", "internal"
        ),
        _source("sklearn.ensemble._forest", "RandomForestClassifier", "distribution_package"),
        "markdown",
    ),
    (
        "DataAnalysisArtifact",
        _source(
            "zenml.materializers.structured_string_materializer",
            "StructuredStringMaterializer",
            "internal",
        ),
        _source("zenml.types", "HTMLString", "internal"),
        "html",
    ),
    (
        "DataArtifact",
        _source("zenml.materializers.built_in_materializer", "BuiltInMaterializer", "internal"),
        _source("builtins", "float", "builtin"),
        "json",
    ),
)
_PREEXISTING_KIND = (
    "DataArtifact",
    _source(
        "zenml.artifacts.preexisting_data_materializer", "PreexistingDataMaterializer", "internal"
    ),
    _source("pathlib", "Path", "builtin"),
    "markdown",
)
_VIS_FILE = {"csv": "data.csv", "json": "data.json", "markdown": "card.md", "html": "report.html"}

# Version categories (one per artifact version).
_OUTPUT = 0  # step_output, kept alive by its output link (and maybe inputs, model, run output)
_LOADED_MANUAL = 1  # manual, kept alive by step input links (loaded in a step)
_LOADED_PREEXISTING = 2  # preexisting, kept alive by step input links
_MODEL_ONLY = 3  # manual or step_output, kept alive only by a model link
_JSON_ONLY = 4  # external, kept alive only by step_configuration.config JSON
_ORPHAN_OUTPUT = 5  # step_output whose run was deleted
_ORPHAN_MANUAL = 6
_ORPHAN_PREEXISTING = 7
_ORPHANS = frozenset({_ORPHAN_OUTPUT, _ORPHAN_MANUAL, _ORPHAN_PREEXISTING})
_STEP_LINKED = frozenset({_OUTPUT, _LOADED_MANUAL, _LOADED_PREEXISTING})
_PREEXISTING = frozenset({_LOADED_PREEXISTING, _ORPHAN_PREEXISTING})


@dataclass
class SyntheticSpec:
    """What to generate. Shares are fractions of ``versions``."""

    versions: int
    orphan_share: float = 0.3
    #: Link rows (step inputs and outputs, model links, run outputs) per version, overall.
    links_per_version: float = 3.0
    #: Number of (non-external) artifacts; 0 means about one per 8 versions.
    artifacts: int = 0
    projects: list[str] = field(default_factory=lambda: ["default"])
    #: ``created`` timestamps spread over the past ``age_days`` days (naive UTC).
    age_days: int = 90
    #: Versions created less than a day ago (inside any sane grace period).
    recent_share: float = 0.01
    #: The artifact store's root: a local directory or ``s3://bucket/prefix``.
    store_root: str = "/tmp/artifact-gc-synthetic"
    #: Store ``{"path": store_root}`` in the component's configuration. False stores
    #: ``{}``, which ZenML reads as ``<config dir>/local_stores/<component id>``; the
    #: root must then follow that layout.
    root_in_configuration: bool = True
    #: Create each version's directory with two small files (local roots only).
    write_files: bool = False
    seed: int = 0
    #: Versions linked to a model and to nothing else.
    model_only_share: float = 0.02
    #: Versions referenced only from ``step_configuration.config`` JSON.
    json_only_share: float = 0.002
    #: Live versions saved manually (and loaded by steps).
    manual_share: float = 0.08
    #: Versions registered with ``register_artifact`` (half live, half orphaned).
    preexisting_share: float = 0.004
    #: Versions that own run_metadata rows, and live versions that carry a tag.
    metadata_share: float = 0.2
    tag_share: float = 0.05
    #: Every version gets one ``artifact_visualization`` row.
    visualizations: bool = True
    #: Pin the artifact store component's id (32 hex); None draws one.
    artifact_store_id: str | None = None
    #: Write ``orphans.txt``/``live.txt`` here instead of returning the id sets.
    ids_dir: Path | None = None
    #: "Now", naive UTC; None means the current time.
    now: datetime | None = None
    user_name: str = "synthetic"


@dataclass
class SyntheticStore:
    """What ``populate`` made, for tests and benchmarks to check results against."""

    url: str
    store_root: str
    artifact_store_id: str
    project_ids: dict[str, str]
    counts: dict[str, int]
    #: Versions with no reference of any kind (empty if ``ids_dir`` was given).
    orphan_ids: frozenset[str]
    live_ids: frozenset[str]
    #: Versions created less than a day ago, orphaned or live.
    recent_ids: frozenset[str]
    #: ``save_type='preexisting'`` versions, orphaned or live.
    preexisting_ids: frozenset[str]
    #: Orphans whose directory contains a live version's directory (``build_demo_store``).
    nested_orphan_ids: frozenset[str] = frozenset()
    orphan_ids_file: Path | None = None
    live_ids_file: Path | None = None

    @property
    def expected_candidates(self) -> frozenset[str]:
        """Orphans a correct GC with a one-day grace period proposes for deletion."""
        return self.orphan_ids - self.recent_ids - self.preexisting_ids


def schema_sql() -> str:
    """The shipped ZenML schema snapshot (CREATE TABLE/INDEX and alembic_version)."""
    return (resources.files("artifact_gc.demo") / "zenml_schema" / SCHEMA_RESOURCE).read_text()


def create_sqlite_store(path: Path) -> str:
    """Create a new SQLite file at ``path`` with ZenML's schema; return its URL."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists")
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.executescript(schema_sql())
        conn.commit()
    finally:
        conn.close()
    return f"sqlite:///{path.resolve()}"


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_id(rng: random.Random) -> str:
    """A version-4 UUID as ZenML stores it (32 lowercase hex, no dashes), from ``rng``."""
    return f"{(rng.getrandbits(128) & _UUID4_CLEAR) | _UUID4_SET:032x}"


def dashed(hex_id: str) -> str:
    """The dashed form of a 32-hex id, as ZenML writes ids into JSON and paths."""
    h = hex_id
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _ts(moment: datetime) -> str:
    # Same text as strftime(TIMESTAMP_FORMAT), several times faster.
    return moment.isoformat(" ", "microseconds")


def _b64json(value: Any) -> bytes:
    return base64.b64encode(json.dumps(value).encode())


def _flavor(root: str) -> str:
    scheme = root.split("://", 1)[0] if "://" in root else ""
    flavors = {"": "local", "file": "local", "s3": "s3", "gs": "gcp", "az": "azure"}
    return flavors.get(scheme, scheme)


def _is_local(root: str) -> bool:
    return "://" not in root or root.startswith("file://")


def _local_path(root: str) -> str:
    return root[len("file://") :] if root.startswith("file://") else root


# ---------------------------------------------------------------------------
# Bulk writer


class _Writer:
    """Chunked ``executemany`` through the raw DBAPI connection, one commit per chunk."""

    def __init__(
        self,
        engine: sa.Engine,
        progress: Callable[[int], None] | None,
        now: str,
        chunk_rows: int,
    ) -> None:
        self.engine = engine
        self.progress = progress
        self.now = now
        self.chunk_rows = chunk_rows
        self.counts: dict[str, int] = {}
        self.sqlite = engine.dialect.name == "sqlite"
        self.metadata = sa.MetaData()
        self.metadata.reflect(engine)
        self.raw = engine.raw_connection()
        self.cursor = self.raw.cursor()
        self.mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        self.quote = engine.dialect.identifier_preparer.quote
        self._saved_pragmas: list[tuple[str, Any]] = []

    def __enter__(self) -> _Writer:
        cur = self.cursor
        if self.sqlite:
            # Only while generating: a crash leaves a scratch file that is thrown away.
            for pragma in ("synchronous", "journal_mode", "foreign_keys"):
                cur.execute(f"PRAGMA {pragma}")
                row = cur.fetchone()
                assert row is not None
                self._saved_pragmas.append((pragma, row[0]))
            cur.execute("PRAGMA foreign_keys=OFF")
            cur.execute("PRAGMA synchronous=OFF")
            cur.execute("PRAGMA journal_mode=OFF")
            cur.execute("PRAGMA cache_size=-1048576")
        else:
            # Parents are always inserted before children, so the result is consistent;
            # checks off only saves the per-row lookups.
            cur.execute("SET SESSION foreign_key_checks=0")
            cur.execute("SET SESSION unique_checks=0")
        self.raw.commit()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.raw.commit()
            cur = self.cursor
            if self.sqlite:
                for pragma, value in reversed(self._saved_pragmas):
                    cur.execute(f"PRAGMA {pragma}={value}")
            else:
                cur.execute("SET SESSION foreign_key_checks=1")
                cur.execute("SET SESSION unique_checks=1")
            self.raw.commit()
        finally:
            self.cursor.close()
            self.raw.close()

    def fetch_one(self, sql: str, params: Sequence[Any]) -> Any:
        self.cursor.execute(sql.replace("?", self.mark), tuple(params))
        row = self.cursor.fetchone()
        return None if row is None else row[0]

    def _filler(self, column: sa.Column[Any]) -> Any:
        """A plausible value for a NOT NULL column nobody set explicitly."""
        name = column.name
        kind = column.type
        if isinstance(kind, sa.Boolean):
            return False
        if isinstance(kind, sa.Integer | sa.Numeric):
            return 0
        if isinstance(kind, sa.DateTime | sa.Date):
            return self.now
        if isinstance(kind, sa.LargeBinary):
            return base64.b64encode(b"{}")
        if isinstance(kind, sa.JSON):
            return "{}"
        if name.endswith(("configuration", "environment", "config", "spec", "metadata", "schema")):
            return "{}"
        if name.endswith("_id"):
            raise ValueError(f"NOT NULL id column {column.table.name}.{name} must be set")
        return ""

    def insert(self, table_name: str, columns: Sequence[str], rows: Iterable[Row]) -> int:
        """Insert ``rows`` (values for ``columns``), filling the other NOT NULL columns."""
        table = self.metadata.tables.get(table_name)
        if table is None:
            raise ValueError(f"the store has no table {table_name!r}")
        missing = [c for c in columns if c not in table.c]
        if missing:
            raise ValueError(f"{table_name} has no columns {missing}")
        extra_cols: list[str] = []
        extra_vals: list[Any] = []
        for column in table.columns:
            if column.name in columns or column.nullable:
                continue
            if column.server_default is not None or column.autoincrement is True:
                continue
            extra_cols.append(column.name)
            extra_vals.append(self._filler(column))
        all_cols = [*columns, *extra_cols]
        fill = tuple(extra_vals)
        sql = (
            f"INSERT INTO {self.quote(table_name)} ({', '.join(self.quote(c) for c in all_cols)})"
            f" VALUES ({', '.join([self.mark] * len(all_cols))})"
        )
        total = 0
        chunk: list[Row] = []
        for row in rows:
            chunk.append(row + fill if fill else row)
            if len(chunk) >= self.chunk_rows:
                total += self._flush(sql, chunk)
                chunk = []
        if chunk:
            total += self._flush(sql, chunk)
        self.counts[table_name] = self.counts.get(table_name, 0) + total
        return total

    def _flush(self, sql: str, chunk: list[Row]) -> int:
        self.cursor.executemany(sql, chunk)
        self.raw.commit()
        if self.progress is not None:
            self.progress(len(chunk))
        return len(chunk)


# ---------------------------------------------------------------------------
# Generation


@dataclass
class _Shared:
    user_id: str
    store_id: str
    stack_id: str
    tag_ids: list[str]


def _split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _at_least_one(total: int, share: float, floor_when: int = 20) -> int:
    count = round(total * share)
    if count == 0 and share > 0 and total >= floor_when:
        count = 1
    return count


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
    if spec.versions < 0:
        raise ValueError("versions must be >= 0")
    if not spec.projects:
        raise ValueError("at least one project")
    if spec.write_files and not _is_local(spec.store_root):
        raise ValueError("write_files needs a local store_root")
    if not spec.root_in_configuration and not _is_local(spec.store_root):
        raise ValueError("a remote store root must be in the component's configuration")
    rng = random.Random(spec.seed)
    now = spec.now or datetime.now(UTC).replace(tzinfo=None)
    now_s = _ts(now)
    root = spec.store_root.rstrip("/")
    engine = sa.create_engine(url)
    try:
        with _Writer(engine, progress, now_s, chunk_rows) as writer:
            shared = _insert_shared(writer, spec, rng, now_s, root)
            result = _Result()
            project_ids: dict[str, str] = {}
            per_project = _split(spec.versions, len(spec.projects))
            artifacts_total = spec.artifacts or max(1, spec.versions // 8) if spec.versions else 0
            per_project_artifacts = _split(artifacts_total, len(spec.projects))
            for name, n_versions, n_artifacts in zip(
                spec.projects, per_project, per_project_artifacts, strict=True
            ):
                project_id = _project(writer, name, rng, now_s)
                project_ids[name] = project_id
                _Project(writer, spec, rng, now, root, shared, project_id, name, result).generate(
                    n_versions, max(n_artifacts, 1 if n_versions else 0)
                )
            counts = dict(writer.counts)
    finally:
        engine.dispose()
    counts.update(result.counts)
    orphan_file = live_file = None
    orphan_ids, live_ids = frozenset(result.orphans), frozenset(result.live)
    if spec.ids_dir is not None:
        spec.ids_dir.mkdir(parents=True, exist_ok=True)
        orphan_file = spec.ids_dir / "orphans.txt"
        live_file = spec.ids_dir / "live.txt"
        orphan_file.write_text("".join(f"{i}\n" for i in result.orphans))
        live_file.write_text("".join(f"{i}\n" for i in result.live))
        orphan_ids = live_ids = frozenset()
    return SyntheticStore(
        url=url,
        store_root=root,
        artifact_store_id=shared.store_id,
        project_ids=project_ids,
        counts=counts,
        orphan_ids=orphan_ids,
        live_ids=live_ids,
        recent_ids=frozenset(result.recent),
        preexisting_ids=frozenset(result.preexisting),
        orphan_ids_file=orphan_file,
        live_ids_file=live_file,
    )


@dataclass
class _Result:
    orphans: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)
    recent: list[str] = field(default_factory=list)
    preexisting: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, key: str, value: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + value


def _project(writer: _Writer, name: str, rng: random.Random, now: str) -> str:
    existing = writer.fetch_one("SELECT id FROM project WHERE name = ?", (name,))
    if existing is not None:
        return str(existing)
    project_id = new_id(rng)
    writer.insert(
        "project",
        ("id", "created", "updated", "name", "display_name", "description", "project_metadata"),
        [(project_id, now, now, name, name, "", "{}")],
    )
    return project_id


def _insert_shared(
    writer: _Writer, spec: SyntheticSpec, rng: random.Random, now: str, root: str
) -> _Shared:
    user_id = writer.fetch_one(
        f"SELECT id FROM {writer.quote('user')} WHERE name = ? AND is_service_account = ?",
        (spec.user_name, False),
    )
    if user_id is None:
        user_id = new_id(rng)
        writer.insert(
            "user",
            (
                "id",
                "created",
                "updated",
                "name",
                "is_service_account",
                "full_name",
                "active",
                "is_admin",
                "oidc_claims",
            ),
            [(user_id, now, now, spec.user_name, False, "Synthetic User", True, True, "null")],
        )
    store_id = spec.artifact_store_id or new_id(rng)
    orchestrator_id = new_id(rng)
    stack_id = new_id(rng)
    suffix = store_id[:8]
    configuration = {"path": root} if spec.root_in_configuration else {}
    null = _b64json(None)
    writer.insert(
        "stack_component",
        (
            "id",
            "created",
            "updated",
            "name",
            "type",
            "flavor",
            "configuration",
            "labels",
            "environment",
            "user_id",
        ),
        [
            (
                store_id,
                now,
                now,
                f"synthetic-{suffix}",
                "artifact_store",
                _flavor(root),
                _b64json(configuration),
                null,
                null,
                user_id,
            ),
            (
                orchestrator_id,
                now,
                now,
                f"synthetic-{suffix}",
                "orchestrator",
                "local",
                _b64json({}),
                null,
                null,
                user_id,
            ),
        ],
    )
    writer.insert(
        "stack",
        ("id", "created", "updated", "name", "description", "labels", "environment", "user_id"),
        [(stack_id, now, now, f"synthetic-{suffix}", "", _b64json({}), null, user_id)],
    )
    writer.insert(
        "stack_composition",
        ("stack_id", "component_id", "default_for_type"),
        [(stack_id, store_id, "artifact_store"), (stack_id, orchestrator_id, "orchestrator")],
    )
    tag_ids: list[str] = []
    new_tags: list[Row] = []
    for i, tag in enumerate(_TAGS):
        existing = writer.fetch_one("SELECT id FROM tag WHERE name = ?", (tag,))
        if existing is not None:
            tag_ids.append(str(existing))
            continue
        tag_id = new_id(rng)
        tag_ids.append(tag_id)
        new_tags.append((tag_id, now, now, tag, user_id, _COLORS[i % len(_COLORS)], False))
    writer.insert(
        "tag", ("id", "created", "updated", "name", "user_id", "color", "exclusive"), new_tags
    )
    return _Shared(user_id=str(user_id), store_id=store_id, stack_id=stack_id, tag_ids=tag_ids)


class _Project:
    """Generates one project's slice of the store."""

    def __init__(
        self,
        writer: _Writer,
        spec: SyntheticSpec,
        rng: random.Random,
        now: datetime,
        root: str,
        shared: _Shared,
        project_id: str,
        project_name: str,
        result: _Result,
    ) -> None:
        self.w = writer
        self.spec = spec
        self.rng = rng
        self.now = now
        self.root = root
        self.shared = shared
        self.project_id = project_id
        self.project_name = project_name
        self.result = result

    # -- planning ---------------------------------------------------------

    def _categories(self, n: int) -> list[int]:
        spec = self.spec
        n_orphan = round(n * spec.orphan_share)
        n_live = n - n_orphan
        n_json = min(n_live, _at_least_one(n, spec.json_only_share))
        n_model = min(n_live - n_json, _at_least_one(n, spec.model_only_share))
        n_step = n_live - n_json - n_model
        n_pre = _at_least_one(n, spec.preexisting_share)
        n_pre_live = min(n_step, n_pre // 2 + n_pre % 2)
        n_pre_orphan = min(n_orphan, n_pre - n_pre_live)
        n_manual = min(n_step - n_pre_live, _at_least_one(n_step, spec.manual_share))
        n_output = n_step - n_pre_live - n_manual
        n_orphan_manual = min(n_orphan - n_pre_orphan, round(n_orphan * 0.1))
        n_orphan_output = n_orphan - n_pre_orphan - n_orphan_manual
        cats = (
            [_OUTPUT] * n_output
            + [_LOADED_MANUAL] * n_manual
            + [_LOADED_PREEXISTING] * n_pre_live
            + [_MODEL_ONLY] * n_model
            + [_JSON_ONLY] * n_json
            + [_ORPHAN_OUTPUT] * n_orphan_output
            + [_ORPHAN_MANUAL] * n_orphan_manual
            + [_ORPHAN_PREEXISTING] * n_pre_orphan
        )
        self.rng.shuffle(cats)
        return cats

    def generate(self, n: int, n_artifacts: int) -> None:
        if n == 0:
            return
        rng = self.rng
        spec = self.spec
        cats = self._categories(n)
        ids = [new_id(rng) for _ in range(n)]
        # created: spread over the past age_days, increasing with the index so that
        # version numbers increase with time; the last recent_share are < 1 day old.
        n_recent = _at_least_one(n, spec.recent_share)
        old_span = max(spec.age_days - 1, 0) * 86400.0
        base = self.now - timedelta(days=max(spec.age_days, 1))
        created: list[float] = []
        n_old = n - n_recent
        for i in range(n):
            if i < n_old:
                created.append(old_span * (i + rng.random()) / max(n_old, 1))
            else:
                # Between 1 hour and 23 hours ago.
                created.append(
                    (self.now - base).total_seconds()
                    - 3600.0 * (23 - 22 * (i - n_old + rng.random()) / max(n_recent, 1))
                )
        # Artifacts: externals get their own ("external_<uuid>"), the others are spread
        # round-robin over n_artifacts so each has several versions.
        artifact_of: list[int] = []
        version_no: list[int] = []
        counter = 0
        n_externals = 0
        for cat in cats:
            if cat == _JSON_ONLY:
                artifact_of.append(n_artifacts + n_externals)
                version_no.append(1)
                n_externals += 1
            else:
                artifact_of.append(counter % n_artifacts)
                version_no.append(counter // n_artifacts + 1)
                counter += 1
        self.result.add("artifacts", n_artifacts + n_externals)

        def step_of(a: int) -> str:
            return _STEP_NAMES[a % len(_STEP_NAMES)]

        # Producing step runs for live outputs: 1-3 outputs of one step name per run,
        # and the j-th run of each step name belongs to pipeline run j, so step names
        # are unique within a pipeline run.
        by_step: dict[str, list[int]] = {s: [] for s in _STEP_NAMES}
        for i, cat in enumerate(cats):
            if cat == _OUTPUT:
                by_step[step_of(artifact_of[i])].append(i)
        step_runs: list[tuple[str, str, int, list[int]]] = []  # id, name, run index, outputs
        producer: dict[int, int] = {}
        for step_name, members in by_step.items():
            j = 0
            pos = 0
            while pos < len(members):
                size = rng.choice((1, 2, 2, 3))
                group = members[pos : pos + size]
                pos += size
                for i in group:
                    producer[i] = len(step_runs)
                step_runs.append((new_id(rng), step_name, j, group))
                j += 1
        n_runs = max((sr[2] for sr in step_runs), default=-1) + 1
        if not step_runs and any(c in (_LOADED_MANUAL, _LOADED_PREEXISTING) for c in cats):
            # Loaded versions need a consumer: one step run without outputs.
            step_runs.append((new_id(rng), _STEP_NAMES[0], 0, []))
            n_runs = 1
        n_pipelines = min(len(_PIPELINES), max(n_runs, 1))
        pipeline_ids = [new_id(rng) for _ in range(n_pipelines)]
        snapshots_per_pipeline = 2
        snapshot_ids = [
            [new_id(rng) for _ in range(snapshots_per_pipeline)] for _ in range(n_pipelines)
        ]
        run_ids = [new_id(rng) for _ in range(n_runs)]
        run_created = [float("inf")] * n_runs
        for _sid, _name, j, outs in step_runs:
            first = min((created[i] for i in outs), default=created[0]) - 120.0
            run_created[j] = min(run_created[j], first)

        # Orphaned outputs name step runs that were deleted with their pipeline run.
        uri_run: dict[int, str] = {}
        for i, cat in enumerate(cats):
            if cat == _OUTPUT:
                uri_run[i] = dashed(step_runs[producer[i]][0])
            elif cat in (_ORPHAN_OUTPUT, _MODEL_ONLY):
                uri_run[i] = dashed(new_id(rng))

        def ts(offset: float) -> str:
            return _ts(base + timedelta(seconds=offset))

        # -- artifacts ------------------------------------------------------
        user = self.shared.user_id
        project = self.project_id
        artifact_ids = [new_id(rng) for _ in range(n_artifacts + n_externals)]
        external_uuid: dict[int, str] = {}

        def artifact_name(a: int) -> str:
            step = step_of(a)
            outputs = _STEPS[step]
            return f"{outputs[(a // len(_STEP_NAMES)) % len(outputs)]}_{a}"

        def output_name(a: int) -> str:
            return artifact_name(a).rsplit("_", 1)[0]

        def artifact_rows() -> Iterator[Row]:
            first_created: dict[int, float] = {}
            for i, a in enumerate(artifact_of):
                if a not in first_created:
                    first_created[a] = created[i]
            for a, aid in enumerate(artifact_ids):
                t = ts(first_created.get(a, 0.0) - 1.0)
                if a >= n_artifacts:
                    name = f"external_{external_uuid[a]}"
                    yield (aid, t, t, name, False, project, user)
                else:
                    yield (aid, t, t, artifact_name(a), True, project, user)

        for i, cat in enumerate(cats):
            if cat == _JSON_ONLY:
                external_uuid[artifact_of[i]] = dashed(new_id(rng))
        self.w.insert(
            "artifact",
            ("id", "created", "updated", "name", "has_custom_name", "project_id", "user_id"),
            artifact_rows(),
        )

        # -- versions -------------------------------------------------------
        root = self.root
        store_id = self.shared.store_id
        uris: list[str] = [""] * n
        kinds: list[int] = [0] * n
        files: list[tuple[str, str]] = []
        n_save: dict[str, int] = {}

        def version_rows() -> Iterator[Row]:
            for i, cat in enumerate(cats):
                a = artifact_of[i]
                kind_index = (a * 7 + 3) % len(_KINDS)
                kind = _KINDS[kind_index]
                if cat in _PREEXISTING:
                    save_type = "preexisting"
                    kind = _PREEXISTING_KIND
                    uri = f"{root}/user_data/{artifact_name(a)}/v{version_no[i]}"
                elif cat == _JSON_ONLY:
                    save_type = "external"
                    kind = _KINDS[4]
                    uri = f"{root}/external_artifacts/external_{external_uuid[a]}"
                elif cat in (_LOADED_MANUAL, _ORPHAN_MANUAL) or (cat == _MODEL_ONLY and i % 2 == 0):
                    save_type = "manual"
                    uri = f"{root}/custom_artifacts/{artifact_name(a)}/{dashed(new_id(rng))}"
                else:
                    save_type = "step_output"
                    uri = (
                        f"{root}/{step_of(a)}/{output_name(a)}/{uri_run[i]}/"
                        f"{rng.getrandbits(32):08x}"
                    )
                n_save[save_type] = n_save.get(save_type, 0) + 1
                uris[i] = uri
                kinds[i] = kind_index if kind is not _PREEXISTING_KIND else -1
                t = ts(created[i])
                yield (
                    ids[i],
                    t,
                    t,
                    str(version_no[i]),
                    version_no[i],
                    kind[0],
                    uri,
                    kind[1],
                    kind[2],
                    save_type,
                    f"{rng.getrandbits(128):032x}",
                    None,
                    artifact_ids[a],
                    store_id,
                    user,
                    project,
                )

        self.w.insert(
            "artifact_version",
            (
                "id",
                "created",
                "updated",
                "version",
                "version_number",
                "type",
                "uri",
                "materializer",
                "data_type",
                "save_type",
                "content_hash",
                "item_count",
                "artifact_id",
                "artifact_store_id",
                "user_id",
                "project_id",
            ),
            version_rows(),
        )
        for key, value in n_save.items():
            self.result.add(f"save_type:{key}", value)

        def vis_type(i: int) -> str:
            return _PREEXISTING_KIND[3] if kinds[i] < 0 else _KINDS[kinds[i]][3]

        if spec.visualizations or spec.write_files:

            def vis_rows() -> Iterator[Row]:
                for i in range(n):
                    t = ts(created[i] + 0.5)
                    vtype = vis_type(i)
                    yield (new_id(rng), t, t, vtype, f"{uris[i]}/{_VIS_FILE[vtype]}", ids[i])

            self.w.insert(
                "artifact_visualization",
                ("id", "created", "updated", "type", "uri", "artifact_version_id"),
                vis_rows(),
            )
        if spec.write_files:
            for i in range(n):
                files.append((uris[i], _VIS_FILE[vis_type(i)]))
            _write_files(files, root, self.shared.store_id)

        # -- pipelines, snapshots, step configurations ----------------------
        pipeline_rows = []
        runs_per_pipeline = _split(n_runs, n_pipelines)
        t0 = ts(0.0)
        for p, pid in enumerate(pipeline_ids):
            pipeline_rows.append(
                (pid, t0, t0, _PIPELINES[p], None, project, user, runs_per_pipeline[p])
            )
        self.w.insert(
            "pipeline",
            (
                "id",
                "created",
                "updated",
                "name",
                "description",
                "project_id",
                "user_id",
                "run_count",
            ),
            pipeline_rows,
        )
        snapshot_rows: list[Row] = []
        for p, pid in enumerate(pipeline_ids):
            for sid in snapshot_ids[p]:
                snapshot_rows.append(
                    (
                        sid,
                        t0,
                        t0,
                        False,
                        _pipeline_configuration(_PIPELINES[p]),
                        _CLIENT_ENVIRONMENT,
                        f"{_PIPELINES[p]}-{{date}}-{{time}}",
                        ZENML_VERSION,
                        ZENML_VERSION,
                        f"{rng.getrandbits(128):032x}",
                        user,
                        project,
                        self.shared.stack_id,
                        pid,
                        len(_STEP_NAMES),
                    )
                )
        self.w.insert(
            "pipeline_snapshot",
            (
                "id",
                "created",
                "updated",
                "is_dynamic",
                "pipeline_configuration",
                "client_environment",
                "run_name_template",
                "client_version",
                "server_version",
                "pipeline_version_hash",
                "user_id",
                "project_id",
                "stack_id",
                "pipeline_id",
                "step_count",
            ),
            snapshot_rows,
        )
        # External artifacts uploaded at compile time: only their dashed ids in the
        # step configuration JSON keep them alive.
        config_slots = [
            (sid, index, step)
            for sids in snapshot_ids
            for sid in sids
            for index, step in enumerate(_STEP_NAMES)
        ]
        externals: dict[int, dict[str, Any]] = {}
        for k, i in enumerate(idx for idx, c in enumerate(cats) if c == _JSON_ONLY):
            slot = k % len(config_slots)
            externals.setdefault(slot, {})[f"external_{k}"] = {"id": dashed(ids[i])}
        self.result.add("step_configurations_with_externals", len(externals))

        def config_rows() -> Iterator[Row]:
            for slot, (sid, index, step) in enumerate(config_slots):
                config = _step_config(step, index, externals.get(slot, {}))
                yield (new_id(rng), t0, t0, index, step, config, sid, None)

        self.w.insert(
            "step_configuration",
            ("id", "created", "updated", "index", "name", "config", "snapshot_id", "step_run_id"),
            config_rows(),
        )

        # -- runs -----------------------------------------------------------
        run_index_in_pipeline = [0] * n_pipelines

        def run_rows() -> Iterator[Row]:
            for j, rid in enumerate(run_ids):
                p = j % n_pipelines
                run_index_in_pipeline[p] += 1
                start = run_created[j] if run_created[j] != float("inf") else 0.0
                t = ts(start)
                end = ts(start + 600.0)
                yield (
                    rid,
                    t,
                    end,
                    f"{_PIPELINES[p]}-{self.project_name}-{j}",
                    dashed(new_id(rng)),
                    t,
                    end,
                    False,
                    "completed",
                    run_index_in_pipeline[p],
                    True,
                    snapshot_ids[p][j % 2],
                    user,
                    project,
                    pipeline_ids[p],
                    self.shared.stack_id,
                )

        self.w.insert(
            "pipeline_run",
            (
                "id",
                "created",
                "updated",
                "name",
                "orchestrator_run_id",
                "start_time",
                "end_time",
                "in_progress",
                "status",
                "index",
                "enable_heartbeat",
                "snapshot_id",
                "user_id",
                "project_id",
                "pipeline_id",
                "stack_id",
            ),
            run_rows(),
        )

        def step_run_rows() -> Iterator[Row]:
            for sid, name, j, outs in step_runs:
                start = min((created[i] for i in outs), default=run_created[j]) - 60.0
                t = ts(start)
                end = ts(start + 60.0)
                p = j % n_pipelines
                yield (
                    sid,
                    t,
                    end,
                    name,
                    t,
                    end,
                    "completed",
                    f"{rng.getrandbits(128):032x}",
                    1,
                    False,
                    snapshot_ids[p][j % 2],
                    run_ids[j],
                    user,
                    project,
                )

        self.w.insert(
            "step_run",
            (
                "id",
                "created",
                "updated",
                "name",
                "start_time",
                "end_time",
                "status",
                "cache_key",
                "version",
                "is_retriable",
                "snapshot_id",
                "pipeline_run_id",
                "user_id",
                "project_id",
            ),
            step_run_rows(),
        )

        # -- links ----------------------------------------------------------
        def output_rows() -> Iterator[Row]:
            for sid, _name, _j, outs in step_runs:
                for i in outs:
                    yield (output_name(artifact_of[i]), sid, ids[i])

        n_outputs = self.w.insert(
            "step_run_output_artifact", ("name", "step_id", "artifact_id"), output_rows()
        )

        # Pipeline outputs: the first output of the last step run of ~30% of runs.
        last_step_run: dict[int, int] = {}
        for s, (_sid, _name, j, outs) in enumerate(step_runs):
            if outs:
                last_step_run[j] = s
        run_outputs: list[Row] = []
        for j, s in sorted(last_step_run.items()):
            if rng.random() < 0.3:
                i = step_runs[s][3][0]
                t = ts(created[i] + 1.0)
                run_outputs.append(
                    (new_id(rng), t, t, output_name(artifact_of[i]), 0, run_ids[j], ids[i])
                )
        n_run_outputs = self.w.insert(
            "pipeline_run_output",
            ("id", "created", "updated", "name", "output_index", "pipeline_run_id", "artifact_id"),
            run_outputs,
        )

        # Model: every model-only version gets one link, and ~1% of the step-linked ones.
        model_id = new_id(rng)
        n_model_versions = max(1, min(100, n // 5000))
        model_version_ids = [new_id(rng) for _ in range(n_model_versions)]
        self.w.insert(
            "model",
            (
                "id",
                "created",
                "updated",
                "name",
                "project_id",
                "user_id",
                "description",
                "save_models_to_registry",
            ),
            [(model_id, t0, t0, "classifier", project, user, "Synthetic model", True)],
        )
        self.w.insert(
            "model_version",
            (
                "id",
                "created",
                "updated",
                "name",
                "project_id",
                "user_id",
                "model_id",
                "number",
                "producer_run_id_if_numeric",
            ),
            [
                (
                    mv,
                    t0,
                    t0,
                    str(k + 1),
                    project,
                    user,
                    model_id,
                    k + 1,
                    f"{rng.getrandbits(128):032x}",
                )
                for k, mv in enumerate(model_version_ids)
            ],
        )
        step_linked = [i for i, c in enumerate(cats) if c in _STEP_LINKED]

        def model_link_rows() -> Iterator[Row]:
            for i, cat in enumerate(cats):
                if cat == _MODEL_ONLY or (cat in _STEP_LINKED and rng.random() < 0.01):
                    t = ts(created[i] + 2.0)
                    yield (new_id(rng), t, t, rng.choice(model_version_ids), ids[i])

        n_model_links = self.w.insert(
            "model_versions_artifacts",
            ("id", "created", "updated", "model_version_id", "artifact_version_id"),
            model_link_rows(),
        )

        # Inputs fill up to links_per_version. Every loaded (manual or preexisting) live
        # version is consumed at least once; the rest pick step-linked versions at random.
        must_load = [i for i, c in enumerate(cats) if c in (_LOADED_MANUAL, _LOADED_PREEXISTING)]
        target = round(spec.links_per_version * n)
        n_inputs = max(len(must_load), target - n_outputs - n_run_outputs - n_model_links)
        if not step_runs or not step_linked:
            n_inputs = 0
        n_consumers = len(step_runs)

        def input_rows() -> Iterator[Row]:
            for k in range(n_inputs):
                i = must_load[k] if k < len(must_load) else rng.choice(step_linked)
                cat = cats[i]
                kind = "step_output" if cat == _OUTPUT else "manual"
                consumer = step_runs[k % n_consumers][0]
                yield (f"input_{k // n_consumers}", kind, 0, consumer, ids[i])

        self.w.insert(
            "step_run_input_artifact",
            ("name", "type", "input_index", "step_id", "artifact_id"),
            input_rows(),
        )

        # -- polymorphic rows: metadata (any version), tags (live versions only) -----
        metadata: list[tuple[str, str, int]] = []  # (metadata id, version id, index)
        for i in range(n):
            if rng.random() < spec.metadata_share:
                metadata.append((new_id(rng), ids[i], i))

        def metadata_rows() -> Iterator[Row]:
            for mid, _vid, i in metadata:
                t = ts(created[i] + 1.0)
                yield (
                    mid,
                    t,
                    t,
                    user,
                    project,
                    "storage_size",
                    str(rng.randrange(10, 10**7)),
                    "int",
                )

        self.w.insert(
            "run_metadata",
            ("id", "created", "updated", "user_id", "project_id", "key", "value", "type"),
            metadata_rows(),
        )
        self.w.insert(
            "run_metadata_resource",
            ("id", "resource_id", "resource_type", "run_metadata_id"),
            ((new_id(rng), vid, "artifact_version", mid) for mid, vid, _i in metadata),
        )

        def tag_rows() -> Iterator[Row]:
            for i, cat in enumerate(cats):
                if cat not in _ORPHANS and rng.random() < spec.tag_share:
                    t = ts(created[i] + 3.0)
                    yield (
                        new_id(rng),
                        t,
                        t,
                        rng.choice(self.shared.tag_ids),
                        ids[i],
                        "artifact_version",
                    )

        self.w.insert(
            "tag_resource",
            ("id", "created", "updated", "tag_id", "resource_id", "resource_type"),
            tag_rows(),
        )

        # -- bookkeeping ------------------------------------------------------
        recent_cut = (self.now - base).total_seconds() - 86400.0
        for i, cat in enumerate(cats):
            (self.result.orphans if cat in _ORPHANS else self.result.live).append(ids[i])
            if created[i] > recent_cut:
                self.result.recent.append(ids[i])
            if cat in _PREEXISTING:
                self.result.preexisting.append(ids[i])
        self.result.add("versions", n)
        self.result.add("orphans", sum(1 for c in cats if c in _ORPHANS))
        self.result.add("live", sum(1 for c in cats if c not in _ORPHANS))
        self.result.add("model_only", cats.count(_MODEL_ONLY))
        self.result.add("json_only", cats.count(_JSON_ONLY))


_CLIENT_ENVIRONMENT = json.dumps(
    {
        "environment": "native",
        "os": "linux",
        "python_version": "3.11.7",
        "zenml_version": ZENML_VERSION,
    }
)


def _pipeline_configuration(name: str) -> str:
    return json.dumps(
        {
            "enable_cache": None,
            "environment": {},
            "secrets": [],
            "execution_mode": "continue_on_failure",
            "settings": {},
            "tags": None,
            "extra": {},
            "model": None,
            "parameters": {},
            "substitutions": {},
            "name": name,
        },
        separators=(",", ":"),
    )


def _step_config(step: str, index: int, externals: dict[str, Any]) -> str:
    """A step configuration shaped like ZenML's (compact JSON, as ZenML stores it)."""
    upstream = [_STEP_NAMES[index - 1]] if index else []
    return json.dumps(
        {
            "spec": {
                "source": {"module": "pipelines.steps", "attribute": step, "type": "user"},
                "upstream_steps": upstream,
                "inputs": {},
                "invocation_id": step,
                "enable_heartbeat": False,
                "parameter_spec": {},
            },
            "step_config_overrides": {
                "enable_cache": None,
                "parameters": {},
                "settings": {},
                "outputs": {},
                "name": step,
                "caching_parameters": {},
                "external_input_artifacts": externals,
                "model_artifacts_or_metadata": {},
                "client_lazy_loaders": {},
            },
        },
        separators=(",", ":"),
    )


def _write_files(files: list[tuple[str, str]], root: str, store_id: str) -> None:
    """Create each version's directory with its visualization file and a data file."""
    base = _local_path(root)
    for uri, vis_name in files:
        path = _local_path(uri)
        if not path.startswith(base):
            raise ValueError(f"{uri} is outside the store root {root}")
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, vis_name), "w") as fh:
            fh.write('{"synthetic": true}\n')
        with open(os.path.join(path, "artifact.bin"), "wb") as fh:
            fh.write(store_id.encode() + b"\n" * 32)


# ---------------------------------------------------------------------------
# Demo store


def build_demo_store(directory: Path, *, versions: int = 2000, seed: int = 7) -> SyntheticStore:
    """A realistic sample store for ``gc demo``, laid out like a ZenML config directory.

    ``<directory>/zenml/local_stores/default_zen_store/zenml.db`` holds the database
    (from the schema snapshot); the artifact store is a local component with ZenML's
    default configuration ``{}``, so its root is ``<directory>/zenml/local_stores/<id>``.
    Files are written. Besides what ``populate`` makes (recent, preexisting, model-only
    and JSON-only versions), one orphan's directory contains a live version's directory.
    """
    directory = Path(directory).resolve()
    config_dir = directory / "zenml"
    rng = random.Random(seed)
    store_id = new_id(rng)
    root = config_dir / "local_stores" / dashed(store_id)
    url = create_sqlite_store(config_dir / "local_stores" / "default_zen_store" / "zenml.db")
    spec = SyntheticSpec(
        versions=versions,
        artifacts=max(1, versions // 10),
        projects=["default"],
        age_days=60,
        recent_share=0.02,
        store_root=str(root),
        root_in_configuration=False,
        write_files=True,
        seed=seed,
        preexisting_share=0.005,
        model_only_share=0.02,
        artifact_store_id=store_id,
    )
    store = populate(url, spec)
    nested = _add_nested_orphan(store, rng)
    store.counts["versions"] += 1
    store.counts["orphans"] += 1
    return SyntheticStore(
        url=store.url,
        store_root=store.store_root,
        artifact_store_id=store.artifact_store_id,
        project_ids=store.project_ids,
        counts=store.counts,
        orphan_ids=store.orphan_ids | {nested},
        live_ids=store.live_ids,
        recent_ids=store.recent_ids,
        preexisting_ids=store.preexisting_ids,
        nested_orphan_ids=frozenset({nested}),
    )


def _add_nested_orphan(store: SyntheticStore, rng: random.Random) -> str:
    """Add an orphan whose URI is a parent directory of a live version's URI.

    A live step-output version is moved under the orphan's directory (rows and files),
    so deleting the orphan's directory recursively would destroy live data.
    """
    engine = sa.create_engine(store.url)
    try:
        with engine.begin() as conn:
            live = conn.execute(
                sa.text(
                    "SELECT av.id, av.uri, av.artifact_id, av.project_id, av.user_id "
                    "FROM artifact_version av JOIN step_run_output_artifact o "
                    "ON o.artifact_id = av.id WHERE av.save_type = 'step_output' "
                    "ORDER BY av.id LIMIT 1"
                )
            ).one()
            artifact_id = conn.execute(
                sa.text(
                    "SELECT id FROM artifact WHERE project_id = :p AND id != :a ORDER BY id LIMIT 1"
                ),
                {"p": live.project_id, "a": live.artifact_id},
            ).scalar_one()
            number = conn.execute(
                sa.text(
                    "SELECT COALESCE(MAX(version_number), 0) + 1 FROM artifact_version "
                    "WHERE artifact_id = :a"
                ),
                {"a": artifact_id},
            ).scalar_one()
            orphan_uri = f"{store.store_root}/shared_outputs/{dashed(new_id(rng))}"
            new_live_uri = f"{orphan_uri}/{live.uri.rsplit('/', 1)[-1]}"
            created = _ts(datetime.now(UTC).replace(tzinfo=None) - timedelta(days=20))
            orphan_id = new_id(rng)
            conn.execute(
                sa.text(
                    "INSERT INTO artifact_version (id, created, updated, version, version_number,"
                    " type, uri, materializer, data_type, save_type, content_hash, artifact_id,"
                    " artifact_store_id, user_id, project_id) VALUES (:id, :c, :c, :v, :n,"
                    " :type, :uri, :m, :d, 'step_output', :h, :a, :s, :u, :p)"
                ),
                {
                    "id": orphan_id,
                    "c": created,
                    "v": str(number),
                    "n": number,
                    "type": _KINDS[1][0],
                    "uri": orphan_uri,
                    "m": _KINDS[1][1],
                    "d": _KINDS[1][2],
                    "h": f"{rng.getrandbits(128):032x}",
                    "a": artifact_id,
                    "s": store.artifact_store_id,
                    "u": live.user_id,
                    "p": live.project_id,
                },
            )
            conn.execute(
                sa.text(
                    "INSERT INTO artifact_visualization (id, created, updated, type, uri,"
                    " artifact_version_id) VALUES (:id, :c, :c, 'json', :uri, :v)"
                ),
                {"id": new_id(rng), "c": created, "uri": f"{orphan_uri}/data.json", "v": orphan_id},
            )
            for table in ("artifact_version", "artifact_visualization"):
                column = "id" if table == "artifact_version" else "artifact_version_id"
                conn.execute(
                    sa.text(
                        f"UPDATE {table} SET uri = :new || substr(uri, :n) WHERE {column} = :id"
                    ),
                    {"new": new_live_uri, "n": len(live.uri) + 1, "id": live.id},
                )
    finally:
        engine.dispose()
    old_path, new_path = Path(_local_path(live.uri)), Path(_local_path(new_live_uri))
    new_path.parent.mkdir(parents=True, exist_ok=True)
    old_path.rename(new_path)
    (new_path.parent / "data.json").write_text('{"synthetic": "nested orphan"}\n')
    (new_path.parent / "artifact.bin").write_bytes(b"orphan\n")
    return orphan_id
