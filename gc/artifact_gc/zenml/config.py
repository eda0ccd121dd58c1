"""Where ZenML keeps its store: the global config directory and the store URL."""

from __future__ import annotations

import os
import re
from pathlib import Path

from artifact_gc.errors import DatabaseError
from artifact_gc.metadb.engine import normalize_url

DEFAULT_STORE_RELATIVE = Path("local_stores") / "default_zen_store" / "zenml.db"


def zenml_config_dir() -> Path:
    """ZenML's global config directory: ``$ZENML_CONFIG_PATH`` or the platform default."""
    configured = os.environ.get("ZENML_CONFIG_PATH")
    if configured:
        return Path(configured).expanduser()
    import click

    return Path(click.get_app_dir("zenml"))


def _store_section(config_yaml: str) -> dict[str, str]:
    """The scalar keys of the ``store:`` block of ZenML's config.yaml.

    ZenML writes this file itself with a fixed, flat layout; reading the few scalar
    keys we need keeps PyYAML out of our runtime dependencies.
    """
    values: dict[str, str] = {}
    inside = False
    for line in config_yaml.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith((" ", "\t")):
            inside = line.rstrip() == "store:"
            continue
        if inside:
            match = re.match(r"^\s{2}(\w+):\s*(.*)$", line)
            if match:
                values[match.group(1)] = match.group(2).strip().strip("'\"")
    return values


def resolve_database_url(explicit: str | None) -> str:
    """The store to use: ``--db``, else ``ZENML_STORE_URL``, else ZenML's global config."""
    if explicit:
        return normalize_url(explicit)
    env_url = os.environ.get("ZENML_STORE_URL")
    if env_url:
        return normalize_url(env_url)
    config_dir = zenml_config_dir()
    config_file = config_dir / "config.yaml"
    if config_file.exists():
        store = _store_section(config_file.read_text())
        url = store.get("url")
        if url:
            return normalize_url(url)
    default_db = config_dir / DEFAULT_STORE_RELATIVE
    if default_db.exists():
        return f"sqlite:///{default_db}"
    raise DatabaseError(
        f"no ZenML store found: --db not given, ZENML_STORE_URL not set and no local "
        f"store at {default_db}. Pass --db sqlite:////path/zenml.db or a MySQL URL."
    )
