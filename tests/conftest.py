"""Shared fixtures: real ZenML scenario stores (SQLite, MariaDB) and a real S3 API (moto).

Fixtures
- ``scenario_store`` -> ScenarioStore: SQLite store, built once per session, restored
  to a pristine copy at the SAME absolute path before every test (mutate freely).
- ``mariadb_url_factory`` -> callable(prefix="gc_t") -> str: a fresh empty MariaDB
  database (ZenML ``mysql://zenml:<pw>@127.0.0.1:3306/<db>`` URL), dropped afterwards.
- ``mariadb_scenario_store`` -> ScenarioStore: the scenario store on MariaDB, built once
  per session, cloned into a fresh database (and its files restored) for every test.
- ``moto_s3`` -> MotoS3: a moto S3 server on 127.0.0.1, a bucket, storage_options.

Helpers (also importable from ``scenarios.helpers``): ``require_server``,
``list_tree``, ``db_rows``, ``table_counts``, ``integrity_problems``.

Tests that use ``scenario_store``/``mariadb_scenario_store`` are marked ``slow``, those
that use the MariaDB fixtures ``mariadb``, those that use ``moto_s3`` ``s3``,
automatically (``-m "not slow"`` etc. work without decorating every test).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from scenarios.helpers import (
    REQUIRE_SERVERS_ENV,
    ScenarioStore,
    build_scenario_store,
    db_rows,
    integrity_problems,
    list_tree,
    load_scenario_store,
    mariadb_available,
    mariadb_clone_database,
    mariadb_create_database,
    mariadb_drop_database,
    require_server,
    restore_tree,
    table_counts,
)

__all__ = [
    "MotoS3",
    "REQUIRE_SERVERS_ENV",
    "ScenarioStore",
    "db_rows",
    "integrity_problems",
    "list_tree",
    "require_server",
    "table_counts",
]

_AUTO_MARKS = {
    "scenario_store": ("slow",),
    "mariadb_scenario_store": ("slow", "mariadb"),
    "mariadb_pristine_store": ("slow", "mariadb"),
    "mariadb_url_factory": ("mariadb",),
    "moto_s3": ("s3",),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, marks in _AUTO_MARKS.items():
            if fixture in names:
                for mark in marks:
                    if item.get_closest_marker(mark) is None:
                        item.add_marker(getattr(pytest.mark, mark))


# ---------------------------------------------------------------------------
# SQLite scenario store
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pristine:
    live: Path  # the fixed absolute path the store lives at (paths in the DB point here)
    copy: Path  # untouched copy restored into ``live``
    error: str | None = None


@pytest.fixture(autouse=True)
def _sigint_handled() -> Iterator[None]:
    """Every test starts with Ctrl-C raising KeyboardInterrupt in this process. An
    ignored SIGINT survives exec: if anything earlier in the session (an in-process
    command past its point of no return, a library) left it ignored, every gc
    subprocess after it could not be interrupted, and the Ctrl-C tests would see a
    sweep run to the end."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(scope="session")
def _sqlite_pristine(tmp_path_factory: pytest.TempPathFactory) -> _Pristine:
    base = tmp_path_factory.getbasetemp()
    live, copy = base / "scenario-sqlite", base / "scenario-sqlite.pristine"
    try:
        build_scenario_store(live)
    except Exception as exc:  # reported by every test that asks for the store
        return _Pristine(live, copy, error=str(exc))
    shutil.copytree(live, copy, symlinks=True)
    return _Pristine(live, copy)


@pytest.fixture
def scenario_store(_sqlite_pristine: _Pristine) -> Iterator[ScenarioStore]:
    """A real ZenML 0.98.0 SQLite store holding every scenario, fresh for this test."""
    if _sqlite_pristine.error:
        pytest.fail(f"building the SQLite scenario store failed:\n{_sqlite_pristine.error}")
    restore_tree(_sqlite_pristine.copy, _sqlite_pristine.live)
    yield load_scenario_store(_sqlite_pristine.live)


# ---------------------------------------------------------------------------
# MariaDB
# ---------------------------------------------------------------------------


def _new_db_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def mariadb_url_factory() -> Iterator[Callable[..., str]]:
    """``make(prefix="gc_t") -> url``: a fresh empty database on 127.0.0.1:3306 granted
    to user ``zenml`` (with a password, as ZenML requires). All are dropped afterwards."""
    why = mariadb_available()
    if why:
        require_server(why)
    created: list[str] = []

    def make(prefix: str = "gc_t") -> str:
        name = _new_db_name(prefix)
        url = mariadb_create_database(name)
        created.append(name)
        return url

    yield make
    for name in created:
        mariadb_drop_database(name)


@dataclass
class _MariaPristine:
    config_live: Path
    config_copy: Path
    database: str | None = None
    error: str | None = None
    skip: str | None = None


@pytest.fixture(scope="session")
def _mariadb_pristine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_MariaPristine]:
    base = tmp_path_factory.getbasetemp()
    state = _MariaPristine(base / "scenario-mariadb", base / "scenario-mariadb.pristine")
    why = mariadb_available()
    if why:
        state.skip = why
        yield state
        return
    state.database = _new_db_name("gc_pristine")
    try:
        url = mariadb_create_database(state.database)
        build_scenario_store(state.config_live, store_url=url)
        shutil.copytree(state.config_live, state.config_copy, symlinks=True)
    except Exception as exc:
        state.error = str(exc)
    yield state
    mariadb_drop_database(state.database)


@pytest.fixture(scope="session")
def mariadb_pristine_store(_mariadb_pristine: _MariaPristine) -> ScenarioStore:
    """The session's pristine MariaDB database (the clone source) and expectations, for
    comparisons. READ-ONLY. Its config_dir is the fixed path that
    ``mariadb_scenario_store`` restores per test, so its files are not guaranteed."""
    if _mariadb_pristine.skip:
        require_server(_mariadb_pristine.skip)
    if _mariadb_pristine.error:
        pytest.fail(f"building the MariaDB scenario store failed:\n{_mariadb_pristine.error}")
    # The live config dir's expected.json names the latest clone; the copy names the
    # pristine database.
    return load_scenario_store(_mariadb_pristine.config_copy)


@pytest.fixture
def mariadb_scenario_store(
    _mariadb_pristine: _MariaPristine, mariadb_url_factory: Callable[..., str]
) -> ScenarioStore:
    """The scenario store on MariaDB, in a fresh database of its own (dropped after the
    test) with the artifact files restored at the config dir's fixed path."""
    if _mariadb_pristine.skip:
        require_server(_mariadb_pristine.skip)
    if _mariadb_pristine.error:
        pytest.fail(f"building the MariaDB scenario store failed:\n{_mariadb_pristine.error}")
    assert _mariadb_pristine.database is not None
    url = mariadb_url_factory("gc_scn")
    mariadb_clone_database(_mariadb_pristine.database, url.rsplit("/", 1)[1])
    restore_tree(_mariadb_pristine.config_copy, _mariadb_pristine.config_live)
    store = load_scenario_store(_mariadb_pristine.config_live, db_url=url)
    (store.config_dir / "expected.json").write_text(json.dumps(store.expected, indent=2) + "\n")
    return store


# ---------------------------------------------------------------------------
# S3 (moto server on loopback)
# ---------------------------------------------------------------------------


@dataclass
class MotoS3:
    """A running moto S3 server on 127.0.0.1 with one empty bucket."""

    endpoint_url: str
    bucket: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    def url(self, key: str = "") -> str:
        """``s3://<bucket>/<key>``."""
        return f"s3://{self.bucket}/{key.lstrip('/')}" if key else f"s3://{self.bucket}"

    def client(self) -> Any:
        """A boto3 S3 client bound to the moto endpoint."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def filesystem(self) -> Any:
        """A fresh s3fs filesystem (no instance cache) bound to the moto endpoint."""
        import s3fs

        return s3fs.S3FileSystem(skip_instance_cache=True, **self.storage_options)


@pytest.fixture
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoS3]:
    """A real S3 API over HTTP on 127.0.0.1 (moto), a created bucket and fsspec options.

    AWS_* variables are set to dummy credentials and the endpoint for the test, and any
    profile/credential files are hidden so nothing can reach a real AWS account."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # pragma: no cover - test extra missing
        require_server(f"moto[server] is not installed: {exc}")
        raise

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        for var in (
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_SECURITY_TOKEN",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        ):
            monkeypatch.delenv(var, raising=False)
        for var, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            monkeypatch.setenv(var, value)
        s3 = MotoS3(
            endpoint_url=endpoint,
            bucket=f"gc-test-{uuid.uuid4().hex[:12]}",
            storage_options={
                "key": "testing",
                "secret": "testing",
                "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
            },
        )
        s3.client().create_bucket(Bucket=s3.bucket)
        yield s3
    finally:
        server.stop()


# Re-exported so tests can also use them as fixtures.
@pytest.fixture
def helpers() -> Any:
    """The helper module (``list_tree``, ``db_rows``, ``integrity_problems``, ...)."""
    import scenarios.helpers as module

    return module


# ---------------------------------------------------------------------------
# Reliability figures
# ---------------------------------------------------------------------------


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config
                            ) -> None:
    """Print the reliability suite's figures (tests/reliability.py) after the run.

    ``ARTIFACT_GC_RELIABILITY_JSON=PATH`` also writes them as JSON."""
    from reliability import LEDGER, soak_factor

    if LEDGER.empty():
        return
    terminalreporter.section("reliability summary")
    terminalreporter.write_line(f"soak factor: {soak_factor()}")
    for line in LEDGER.lines():
        terminalreporter.write_line(line)
    target = os.environ.get("ARTIFACT_GC_RELIABILITY_JSON")
    if target:
        LEDGER.dump(target)


# ---------------------------------------------------------------------------
# GCS (gcp-storage-emulator) and Azure Blob (Azurite) on loopback
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[Any]:
    """The GCS emulator in a subprocess of its own, for the whole session
    (tests/emulators.py); each test makes buckets of its own."""
    from emulators import GCSFS_LAYOUT_PROBE, GCSEmulator

    # gcsfs reads it once, on import: its gRPC bucket-layout probe would hang on the
    # emulator (see emulators.GCSEmulator.env).
    os.environ.setdefault(GCSFS_LAYOUT_PROBE, "false")
    try:
        import gcp_storage_emulator  # noqa: F401
        import gcsfs  # noqa: F401
    except ImportError as exc:  # pragma: no cover - test extra missing
        require_server(f"gcp-storage-emulator or gcsfs is not installed: {exc}")

    emulator = GCSEmulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def azurite() -> Iterator[Any]:
    """Azurite's blob service, for the whole session (tests/emulators.py): installed by
    ``npm ci`` (``make test`` does it) into node_modules/."""
    try:
        import adlfs  # noqa: F401
    except ImportError as exc:  # pragma: no cover - test extra missing
        require_server(f"adlfs is not installed: {exc}")
    from emulators import Azurite

    try:
        emulator = Azurite.start()
    except FileNotFoundError as exc:
        require_server(str(exc))
        raise
    try:
        yield emulator
    finally:
        emulator.stop()
