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

The package, one module per concern:

- ``spec``: ``SyntheticSpec`` (what to generate) and ``SyntheticStore`` (what was made);
- ``schema``: ZenML's schema snapshot, ``create_sqlite_store``;
- ``encoding``: how ZenML writes ids, timestamps, base64 JSON and store roots;
- ``vocabulary``: step, pipeline, tag and artifact-kind names, configuration JSON;
- ``writer``: the bulk row writer;
- ``shared``: the user, artifact store, stack and tags every project shares;
- ``plan``: one project's plan (categories, ids, ages, artifacts, runs), drawn first;
- ``context``: what a project's row steps share, and the tally of what they made;
- ``versions``: artifact, version, visualization, metadata and tag rows;
- ``runs``: pipeline, snapshot, step configuration, pipeline run and step run rows;
- ``links``: step output, run output, model link and step input rows;
- ``project``: one project: its plan, then its row steps in a fixed order;
- ``files``: the version directories of a local store;
- ``populate``: ``populate``, which ties them together;
- ``demo_store``: ``build_demo_store``, the sample store of ``gc demo``.

Test and benchmark support, not part of the collector: nothing in mark, sweep, storage
or review imports it (``tests/test_synthetic.py`` checks that).
"""

from __future__ import annotations

from artifact_gc.demo.synthetic.demo_store import build_demo_store
from artifact_gc.demo.synthetic.encoding import TIMESTAMP_FORMAT, Row, dashed, new_id
from artifact_gc.demo.synthetic.populate import populate
from artifact_gc.demo.synthetic.schema import (
    SCHEMA_RESOURCE,
    ZENML_VERSION,
    create_sqlite_store,
    schema_sql,
)
from artifact_gc.demo.synthetic.spec import SyntheticSpec, SyntheticStore

__all__ = [
    "SCHEMA_RESOURCE",
    "TIMESTAMP_FORMAT",
    "ZENML_VERSION",
    "Row",
    "SyntheticSpec",
    "SyntheticStore",
    "build_demo_store",
    "create_sqlite_store",
    "dashed",
    "new_id",
    "populate",
    "schema_sql",
]
