"""Artifact stores: where each store's root is, and how to reach it with fsspec.

The root decides what a sweep may touch: nothing outside it is ever deleted. Remote
stores name their root in the component's ``path``; ZenML's default local store has
an empty configuration and lives at ``<config dir>/local_stores/<component uuid>``.
Credentials found in a component's configuration are used to connect and are never
written anywhere.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from artifact_gc.errors import UsageError
from artifact_gc.metadb.engine import sqlite_path
from artifact_gc.storage.options import merge_options
from artifact_gc.storage.urls import is_remote
from artifact_gc.zenml.config import DEFAULT_STORE_RELATIVE, zenml_config_dir

# Keys of ZenML artifact-store configurations that fsspec backends understand.
_S3_OPTION_KEYS = ("key", "secret", "token", "client_kwargs", "config_kwargs",
                   "s3_additional_kwargs")
#: The same for the other flavors with options of their own: GCS (gcsfs) and Azure
#: (adlfs). Anything absent leaves each SDK's standard credential chain to decide.
_FLAVOR_OPTION_KEYS: dict[str, tuple[str, ...]] = {
    "s3": _S3_OPTION_KEYS,
    "gcp": ("project", "token", "endpoint_url", "requester_pays"),
    "azure": ("account_name", "account_key", "sas_token", "connection_string",
              "account_host", "client_id", "client_secret", "tenant_id", "anon"),
}


@dataclass(frozen=True)
class ArtifactStore:
    """One ``stack_component`` of type ``artifact_store`` and its resolved root."""

    id: str
    name: str
    flavor: str
    root: str | None
    root_source: str
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def normalize_id(value: str) -> str:
    """Ids are stored as 32 lowercase hex characters; accept the dashed form too."""
    try:
        return uuid.UUID(value.strip()).hex
    except ValueError as exc:
        raise UsageError(f"{value!r} is not a component id (a UUID)") from exc


def normalize_root(root: str) -> str:
    """A root without a trailing separator, so that ``root + '/'`` is its inside."""
    root = root.strip()
    if "://" not in root:
        root = os.path.normpath(root)
    return root.rstrip("/") or "/"


def parse_store_root_overrides(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Read ``--store-root COMPONENT_ID=URL`` options."""
    overrides: dict[str, str] = {}
    for pair in pairs:
        component, sep, url = pair.partition("=")
        if not sep or not url.strip():
            raise UsageError(f"--store-root expects COMPONENT_ID=URL, got {pair!r}")
        overrides[normalize_id(component)] = normalize_root(url)
    return overrides


def decode_configuration(raw: Any) -> dict[str, Any]:
    """ZenML keeps a component's configuration as base64-encoded JSON."""
    if raw is None:
        return {}
    data = raw if isinstance(raw, bytes | bytearray | memoryview) else str(raw).encode()
    try:
        decoded = json.loads(base64.b64decode(bytes(data)).decode())
    except (ValueError, UnicodeDecodeError):
        try:
            decoded = json.loads(bytes(data).decode())
        except (ValueError, UnicodeDecodeError):
            return {}
    return decoded if isinstance(decoded, dict) else {}


def config_dir_for(db_url: str) -> Path:
    """The ZenML config dir that a local store's default root hangs off.

    A SQLite store at ``<config>/local_stores/default_zen_store/zenml.db`` names its
    config dir by its own path; that beats the environment of whoever runs gc.
    """
    path = sqlite_path(db_url)
    if path is not None and path.parts[-3:] == DEFAULT_STORE_RELATIVE.parts:
        return path.parents[2]
    return zenml_config_dir()


def _storage_options(flavor: str, config: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for key in _FLAVOR_OPTION_KEYS.get(flavor, ()):
        value = config.get(key)
        # Values like "{{secret.key}}" are ZenML secret references we cannot resolve;
        # the SDK's standard credential chain applies instead.
        if value in (None, "", {}) or (isinstance(value, str) and value.startswith("{{")):
            continue
        options[key] = value
    return options


def load_artifact_stores(
    engine: Any, db_url: str, overrides: dict[str, str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> dict[str, ArtifactStore]:
    """Every artifact store of the ZenML store, keyed by component id.

    ``storage_options`` (from ``--storage-option``) are merged over each remote
    store's own configuration."""
    import sqlalchemy as sa

    overrides = overrides or {}
    config_dir = config_dir_for(db_url)
    stores: dict[str, ArtifactStore] = {}
    query = sa.text(
        "SELECT id, name, flavor, configuration FROM stack_component "
        "WHERE type = 'artifact_store'"
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    for component_id, name, flavor, raw in rows:
        component = str(component_id)
        config = decode_configuration(raw)
        if component in overrides:
            root: str | None = overrides[component]
            source = "--store-root"
        elif config.get("path"):
            root = normalize_root(str(config["path"]))
            source = "configuration"
        elif flavor == "local":
            root = normalize_root(
                str(config_dir / "local_stores" / str(uuid.UUID(component)))
            )
            source = "zenml default local store"
        else:
            root = None
            source = "unknown"
        options = _storage_options(str(flavor), config)
        if storage_options and root is not None and is_remote(root):
            options = merge_options(options, storage_options)
        stores[component] = ArtifactStore(
            id=component, name=str(name), flavor=str(flavor), root=root,
            root_source=source, storage_options=options,
        )
    unknown = set(overrides) - set(stores)
    if unknown:
        raise UsageError(
            "--store-root names no artifact store of this ZenML store: "
            + ", ".join(sorted(unknown))
        )
    return stores
