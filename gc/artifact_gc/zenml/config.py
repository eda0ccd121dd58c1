"""Where ZenML keeps its store: the global config directory and the store URL."""

from __future__ import annotations

import os
import re
from pathlib import Path

from artifact_gc.errors import DatabaseError, UsageError
from artifact_gc.metadb.engine import normalize_url, redact

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


#: URL schemes of the databases a ZenML store lives in (``mysql+pymysql``, ``mariadb``...).
_STORE_SCHEMES = ("sqlite", "mysql", "mariadb")
#: A ZenML server: refused by normalize_url with its own explanation.
_REST_SCHEMES = ("http", "https")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_SQLITE_HEADER = b"SQLite format 3\0"


def _scheme(value: str) -> str | None:
    """The URL scheme of ``value``, or None for a bare path."""
    match = _SCHEME.match(value)
    if match is None or (len(match.group(1)) == 1 and "://" not in value):
        return None
    return match.group(1).lower()


def _bare_path_url(value: str) -> str:
    """``--db path/to/zenml.db``: an existing SQLite file, as a ``sqlite:////`` URL."""
    path = Path(value).expanduser()
    if not path.exists():
        raise UsageError(
            f"--db {value}: no such file. --db takes a path to an existing zenml.db or a "
            "URL (sqlite:////abs/path/zenml.db, mysql+pymysql://user:pw@host/zenml)")
    if path.is_dir():
        hint = path / "zenml.db"
        raise UsageError(
            f"--db {value} is a directory" + (f"; did you mean --db {hint}?" if hint.exists()
                                               else "; pass the path of its zenml.db"))
    with path.open("rb") as handle:
        header = handle.read(len(_SQLITE_HEADER))
    # An empty file is an SQLite database with no tables: the schema check says
    # "not a ZenML store" about it, which is the more useful message.
    if header and header != _SQLITE_HEADER:
        raise UsageError(f"--db {value} is not an SQLite database file")
    return f"sqlite:///{path.resolve()}"


def _check_sqlite_path(url: str) -> None:
    """A missing SQLite file named with three slashes is nearly always an absolute path
    missing its fourth: ``sqlite:///tmp/zenml.db`` is the relative path tmp/zenml.db."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.startswith(prefix + "/"):
        return
    relative = url[len(prefix):].split("?", 1)[0]
    if not relative or relative == ":memory:" or Path(relative).exists():
        return
    absolute = "/" + relative
    found = " (that file exists)" if Path(absolute).exists() else ""
    raise DatabaseError(
        f"SQLite database {relative} does not exist: after sqlite:/// (three slashes) "
        f"comes a path relative to the current directory. For the absolute path "
        f"{absolute}{found}, write four slashes: sqlite:///{absolute}")


def database_url(value: str) -> str:
    """A ``--db`` value as a SQLAlchemy URL: a URL of a database ZenML supports, or a
    path to an existing SQLite file. Anything else is a usage error."""
    value = value.strip()
    scheme = _scheme(value)
    if scheme is None:
        return _bare_path_url(value)
    base = scheme.split("+", 1)[0]
    if base not in _STORE_SCHEMES and base not in _REST_SCHEMES:
        raise UsageError(
            f"unsupported database URL scheme {scheme!r} in {redact(value)!r}: ZenML stores "
            "are SQLite (sqlite:////path/zenml.db, or a path to the file) or MySQL/MariaDB "
            "(mysql+pymysql://user:pw@host/zenml)")
    url = normalize_url(value)
    _check_sqlite_path(url)
    return url


def resolve_database_url(explicit: str | None) -> str:
    """The store to use: ``--db``, else ``ZENML_STORE_URL``, else ZenML's global config."""
    if explicit:
        return database_url(explicit)
    env_url = os.environ.get("ZENML_STORE_URL")
    if env_url:
        return database_url(env_url)
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
