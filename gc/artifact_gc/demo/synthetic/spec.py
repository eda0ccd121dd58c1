"""What to generate (``SyntheticSpec``) and what was made (``SyntheticStore``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path


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
    #: With ``write_files``: only the orphans' directories. A sweep touches no live
    #: version's files, so benchmarks of a sweep at 1M orphans (2.5M versions) need not
    #: keep 1.5M live directories on disk.
    orphan_files_only: bool = False
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
