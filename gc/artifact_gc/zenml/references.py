"""References to artifact versions that ZenML keeps in JSON, not in foreign keys.

Mark (in DuckDB) and the sweep's re-verification (in Python) read the same
configurations with the same rule, from here.
"""

from __future__ import annotations

import re

#: The keys of a step configuration under which ZenML names artifact versions by id:
#: external input artifacts (uploaded at compile time, dashed id), and lazy loaders
#: (``Client().get_artifact_version(id)`` in a pipeline body, the id as the user wrote
#: it), which a step resolves only when it starts. A snapshot that a schedule or a
#: rerun will use names the version there and nowhere else yet. A lazy loader that
#: names a version by artifact name (and version) is not an id and keeps nothing: it
#: resolves to whatever exists when the step starts.
CONFIG_ID_KEYS = ("external_input_artifacts", "client_lazy_loaders")

#: A version id in a step configuration is a whole run of hex digits and dashes that
#: is either a dashed UUID or 32 hex digits. Hashes of other lengths must not match in
#: part (a false match would only keep more). Mark applies the same rule in DuckDB,
#: whose RE2 has no look-around: maximal runs (``CONFIG_ID_RUN``), each matched whole
#: against ``CONFIG_ID_WHOLE``.
CONFIG_ID_RUN = r"[0-9a-f-]+"
CONFIG_ID_WHOLE = r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{32})$"
VERSION_ID = re.compile(
    r"(?<![0-9a-f-])(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|[0-9a-f]{32})(?![0-9a-f-])", re.IGNORECASE
)


def config_filter(column: str) -> str:
    """SQL (SQLite and MySQL) for the configurations that can name a version id.

    Every step configuration carries each key of ``CONFIG_ID_KEYS``, most of them
    with an empty ``{}``; only the others are read. Before 0.83.1 one JSON document
    holds every step of a deployment (``pipeline_deployment.step_configurations``), so
    one step's empty ``{}`` says nothing of the others: a document that also holds a
    key followed by a non-empty object is read as well. ``column`` is already quoted."""
    return " OR ".join(
        f"({column} LIKE '%{key}%' AND (({column} NOT LIKE '%\"{key}\":{{}}%'"
        f" AND {column} NOT LIKE '%\"{key}\": {{}}%')"
        f" OR {column} LIKE '%\"{key}\":{{\"%' OR {column} LIKE '%\"{key}\": {{\"%'))"
        for key in CONFIG_ID_KEYS
    )
