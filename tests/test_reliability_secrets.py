"""Secrets stay secret (issue 6, "Security").

A MariaDB user with a distinctive password, and AWS credentials (key id, secret key,
session token) both in an S3 artifact store's component configuration and on the
command line (``--storage-option``), go through every command: mark (table and
``--json``), show in every format, query, filter, diff, report, history, sweep (dry
run and real), status, and failing commands with and without ``--traceback``.

Then every file they produced (manifests, journals, reports, exports, manifests and
journals on S3), everything they printed, every exception they raised and every log
record at INFO and above are searched for each secret: as is, URL-encoded (both ways),
JSON-escaped, hex, and base64 at every alignment (so a secret inside an encoded blob
is found too). None may appear.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import sqlalchemy as sa

from artifact_gc.demo.synthetic import SyntheticSpec, create_sqlite_store, populate
from conftest import MotoS3
from reliability import record
from s3_support import upload_store_objects
from scenarios.helpers import MARIADB_HOST
from test_reliability_hostile import (  # noqa: F401 - the fixture is shared, not redefined
    _closed_port,
    _invoke,
    create_mariadb_user,
    drop_mariadb_user,
    make_maria_store,
    zenml_mariadb_schema,
)

GC = str(Path(sys.executable).with_name("gc"))


#: Characters that URL-encoding, JSON and shells treat specially, on purpose.
DB_PASSWORD = "Gc-h4/Sekr3t@pw%Q7!z+"
KEY_ID = "AKIAH4LEAKCHECK7Q2Z9"
SECRET_KEY = "h4SecretKey/Zk8vQ3mP0wXy+Ab12Cd34Ef56"
TOKEN = "h4-session-token-Fo9Lq3Zr7Xc2Mn5Bv8=="
CONFIG_KEY_ID = "AKIAH4CONFIGKEY3W8XY"
CONFIG_SECRET = "h4-config-secret-Lp0Oi9Uy8Tr7/+"
CONFIG_TOKEN = "h4-config-token-Qa1Ws2Ed3Rf4Tg5"


def forms(secret: str) -> dict[str, bytes]:
    """Every spelling of ``secret`` that a careless writer could produce."""
    raw = secret.encode()
    out = {
        "raw": raw,
        "url-encoded": quote(secret, safe="").encode(),
        "url-encoded (path)": quote(secret).encode(),
        "form-encoded": quote_plus(secret).encode(),
        "JSON string": json.dumps(secret)[1:-1].encode(),
        "hex": raw.hex().encode(),
    }
    # base64 at the three alignments a secret can have inside a longer encoded blob;
    # the first and last groups depend on the neighbouring bytes and are left out.
    for shift in range(3):
        for name, encode in (("base64", base64.b64encode),
                             ("base64url", base64.urlsafe_b64encode)):
            encoded = encode(b"\0" * shift + raw)
            out[f"{name}@{shift}"] = encoded[4 if shift else 0:-4]
    return out


@dataclass
class Evidence:
    """Everything the commands produced or said, to be searched for secrets."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    #: Count the searches in the reliability ledger (not for the detector's self-test).
    ledger: bool = True

    def add(self, label: str, data: str | bytes | None) -> None:
        if data is None:
            return
        self.blobs[f"{len(self.blobs):03d} {label}"] = (
            data.encode() if isinstance(data, str) else data)

    def result(self, label: str, result: Any) -> None:
        """A CliRunner result: its output and, if it raised, the exception."""
        self.add(f"{label}: output", result.output)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            self.add(f"{label}: exception", f"{result.exception!r} {result.exception}")

    def process(self, label: str, done: subprocess.CompletedProcess[str]) -> None:
        self.add(f"{label}: stdout", done.stdout)
        self.add(f"{label}: stderr", done.stderr)

    def tree(self, label: str, directory: Path) -> None:
        files = [p for p in sorted(directory.rglob("*")) if p.is_file()]
        assert files, f"{label}: nothing was written under {directory}"
        for path in files:
            self.add(f"{label}: {path.relative_to(directory)}", path.read_bytes())

    def logs(self, records: list[logging.LogRecord]) -> None:
        self.add("log records", "\n".join(
            f"{r.name} {r.levelname} {r.getMessage()} {r.exc_text or ''}" for r in records))

    def assert_free_of(self, secrets: dict[str, str]) -> None:
        found = []
        for kind, secret in secrets.items():
            spellings = forms(secret)
            for label, blob in self.blobs.items():
                lowered = blob.lower()
                for spelling, form in spellings.items():
                    if form in blob or (not spelling.startswith("base64")
                                        and form.lower() in lowered):
                        found.append(f"{kind} ({spelling}) in {label}")
            if self.ledger:
                record("secrets checked", kind, len(self.blobs))
        assert not found, "\n".join(found)


def _gc(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    return subprocess.run([GC, *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, timeout=180, check=False)


def _ok(result: Any) -> Any:
    assert result.exit_code == 0, result.output
    return result


def _failing(evidence: Evidence, label: str, *args: str) -> None:
    """A failing command, plain and with --traceback (the stack trace as Python prints
    it), in process."""
    plain = _invoke(*args)
    assert plain.exit_code not in (0, 1), (label, plain.output)
    evidence.result(label, plain)
    traced = _invoke("--traceback", *args)
    assert traced.exception is not None and not isinstance(traced.exception, SystemExit)
    text = "".join(traceback.format_exception(*traced.exc_info))
    assert "Traceback (most recent call last)" in text
    evidence.add(f"{label} --traceback", text)


def test_the_search_finds_every_spelling() -> None:
    """The detector itself: a secret hidden in any of these ways is found, so a clean
    result below means something."""
    secret = CONFIG_SECRET
    hidden = {
        "as is": f"error: bad key {secret}!",
        "in a URL": f"s3://k:{quote(secret, safe='')}@host/x",
        "in a form": f"a=1&secret={quote_plus(secret)}",
        "in JSON": json.dumps({"config": {"secret": secret}}),
        "in base64 JSON": base64.b64encode(json.dumps({"s": secret}).encode()).decode(),
        "in base64 at offset 1": base64.b64encode(b"x" + secret.encode()).decode(),
        "in base64 at offset 2": base64.urlsafe_b64encode(b"xy" + secret.encode()).decode(),
        "in hex": secret.encode().hex().upper(),
    }
    for how, text in hidden.items():
        evidence = Evidence(ledger=False)
        evidence.add(how, text)
        with pytest.raises(AssertionError):
            evidence.assert_free_of({"probe": secret})
    clean = Evidence(ledger=False)
    clean.add("unrelated", "s3://bucket/store key=*** " + base64.b64encode(b"x" * 64).decode())
    clean.assert_free_of({"probe": secret})


# ---------------------------------------------------------------------------
# The database password
# ---------------------------------------------------------------------------


@pytest.fixture
def secret_user() -> Iterator[str]:
    user = f"gc_h4_secret_{uuid.uuid4().hex[:6]}"
    yield user
    drop_mariadb_user(user)


def test_the_database_password_appears_nowhere(
    zenml_mariadb_schema: str,  # noqa: F811 - the shared fixture
    mariadb_url_factory: Callable[..., str], secret_user: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    maria = make_maria_store(zenml_mariadb_schema, mariadb_url_factory, tmp_path / "root")
    create_mariadb_user(secret_user, DB_PASSWORD, maria.database, "ALL PRIVILEGES")
    url = maria.url_for(secret_user, DB_PASSWORD)
    work, manifests = tmp_path / "work", tmp_path / "work" / "manifests"
    first, narrow = manifests / "first.parquet", manifests / "narrow.parquet"
    evidence = Evidence()

    evidence.result("mark --json", _ok(_invoke(
        "mark", "--db", url, "--older-than", "0s", "--sizes", "--json", "--out", str(first))))
    evidence.result("mark", _ok(_invoke(
        "mark", "--db", url, "--older-than", "0s", "--out", f"{manifests}/")))
    second = next(p for p in manifests.glob("mark-*.parquet"))
    for args in (["show", str(first)], ["show", str(first), "--format", "json"],
                 ["show", str(first), "--format", "csv", "--by", "artifact"],
                 ["query", str(first), "SELECT * FROM manifest", "--format", "csv",
                  "-o", str(work / "rows.csv")],
                 ["query", str(first), "SELECT * FROM manifest", "--format", "json"],
                 ["report", str(first), "-o", str(work / "report.html")],
                 ["filter", str(first), "--where", "true", "-o", str(narrow)],
                 ["diff", str(first), str(second), "--format", "json"],
                 ["history", "--dir", str(manifests)],
                 ["sweep", str(first), "--db", url, "--dry-run", "--json"],
                 ["sweep", str(first), "--db", url, "--dry-run"],
                 ["sweep", str(narrow), "--db", url, "--yes", "--json"],
                 ["status", str(narrow)], ["status", str(narrow), "--json"],
                 ["sweep", str(second), "--db", url, "--yes"]):
        evidence.result(" ".join(args[:2]), _ok(_invoke(*args)))
    assert list(manifests.glob("*.journal/*")), "the sweeps wrote no journal"

    # Failing commands, with and without the stack trace, from the real executable.
    other_db = maria.url_for(secret_user, DB_PASSWORD).rsplit("/", 1)[0] + "/gc_h4_not_mine"
    closed = (f"mysql+pymysql://{quote(secret_user)}:{quote(DB_PASSWORD, safe='')}@"
              f"{MARIADB_HOST}:{_closed_port()}/{maria.database}")
    wrong = maria.url_for(secret_user, DB_PASSWORD + "x")
    for label, args in (
        ("database not granted", ["mark", "--db", other_db, "--out", str(work / "x.parquet")]),
        ("closed port", ["mark", "--db", closed, "--out", str(work / "x.parquet")]),
        ("sweep, other database", ["sweep", str(first), "--db", other_db, "--yes"]),
        ("sweep, swept manifest on a wrong port", ["sweep", str(first), "--db", closed]),
    ):
        _failing(evidence, label, *args)
    # The installed executable, as a user runs it: stderr of a failure and its trace.
    for extra in ((), ("--traceback",)):
        done = _gc(*extra, "mark", "--db", wrong, "--out", str(work / "x.parquet"))
        assert done.returncode == (1 if extra else 3), done.stderr
        assert "Access denied" in done.stderr
        evidence.process(f"wrong password {' '.join(extra)}", done)
    assert not (work / "x.parquet").exists()

    evidence.tree("files", work)
    evidence.logs(caplog.records)
    evidence.assert_free_of({"database password": DB_PASSWORD})
    # ... and the connection details that are not secret are there, so the search above
    # searched the right things.
    assert any(maria.database.encode() in b for b in evidence.blobs.values())
    assert any(b"***" in b for b in evidence.blobs.values())


# ---------------------------------------------------------------------------
# AWS credentials: in the component's configuration and on the command line
# ---------------------------------------------------------------------------


def test_aws_credentials_appear_nowhere(moto_s3: MotoS3, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    db = create_sqlite_store(tmp_path / "zenml.db")
    root = moto_s3.url("store")
    store = populate(db, SyntheticSpec(versions=60, store_root=root, recent_share=0.0, seed=9))
    configuration = {
        "path": root, "key": CONFIG_KEY_ID, "secret": CONFIG_SECRET, "token": CONFIG_TOKEN,
        "client_kwargs": {"endpoint_url": moto_s3.endpoint_url, "region_name": "us-east-1"},
    }
    encoded_config = base64.b64encode(json.dumps(configuration).encode())
    engine = sa.create_engine(db)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE stack_component SET configuration = :c "
                                   "WHERE id = :i"),
                           {"c": encoded_config, "i": store.artifact_store_id})
    engine.dispose()
    client = moto_s3.client()
    upload_store_objects(client, moto_s3.bucket, db, "store")
    options = ["--storage-option", f"key={KEY_ID}", "--storage-option", f"secret={SECRET_KEY}",
               "--storage-option", f"token={TOKEN}", "--storage-option",
               f"client_kwargs.endpoint_url={moto_s3.endpoint_url}"]
    work = tmp_path / "work"
    local = work / "mark.parquet"
    remote = moto_s3.url("manifests/mark.parquet")
    evidence = Evidence()

    evidence.result("mark --sizes --json", _ok(_invoke(
        "mark", "--db", db, "--older-than", "0s", "--sizes", "--json", "--out", str(local),
        *options)))
    evidence.result("mark to S3", _ok(_invoke(
        "mark", "--db", db, "--older-than", "0s", "--out", remote, *options)))
    for args in (["show", remote, *options], ["show", remote, "--format", "json", *options],
                 ["show", str(local), "--format", "csv", "--by", "reason"],
                 ["query", remote, "SELECT * FROM manifest", "--format", "json", *options],
                 ["report", remote, "-o", str(work / "report.html"), *options],
                 ["diff", str(local), remote, "--format", "json", *options],
                 ["history", "--dir", moto_s3.url("manifests"), *options],
                 ["sweep", remote, "--db", db, "--dry-run", "--json", *options],
                 ["sweep", remote, "--db", db, "--yes", "--json", "--batch-size", "5",
                  *options],
                 ["status", str(local), "--json"]):
        evidence.result(" ".join(args[:2]), _ok(_invoke(*args)))
    journal = [k for k in _keys(client, moto_s3.bucket, "manifests/") if ".journal/" in k]
    assert journal, "the sweep wrote no journal on S3"
    for key in _keys(client, moto_s3.bucket, "manifests/"):
        evidence.add(f"s3://{moto_s3.bucket}/{key}",
                     client.get_object(Bucket=moto_s3.bucket, Key=key)["Body"].read())

    # Failing commands, with and without the stack trace, from the real executable.
    missing_bucket = f"s3://{moto_s3.bucket}-missing/report.html"
    for label, args in (
        ("no such manifest on S3", ["show", moto_s3.url("manifests/nope.parquet"), *options]),
        ("report into a missing bucket", ["report", remote, "-o", missing_bucket, *options]),
        ("a credential given without its key", [
            "mark", "--db", db, "--storage-option", SECRET_KEY, "--out", str(work / "x.parquet")]),
    ):
        _failing(evidence, label, *args)
    for extra in ((), ("--traceback",)):
        done = _gc(*extra, "show", moto_s3.url("manifests/nope.parquet"), *options)
        assert done.returncode == (1 if extra else 5), done.stderr
        evidence.process(f"no such manifest on S3 (gc) {' '.join(extra)}", done)

    evidence.tree("files", work)
    evidence.logs(caplog.records)
    evidence.assert_free_of({
        "AWS access key id (--storage-option)": KEY_ID,
        "AWS secret key (--storage-option)": SECRET_KEY,
        "AWS session token (--storage-option)": TOKEN,
        "AWS access key id (component configuration)": CONFIG_KEY_ID,
        "AWS secret key (component configuration)": CONFIG_SECRET,
        "AWS session token (component configuration)": CONFIG_TOKEN,
        "component configuration blob": encoded_config.decode(),
    })


def _keys(client: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                 Prefix=prefix):
        keys.extend(entry["Key"] for entry in page.get("Contents") or [])
    return keys


# ---------------------------------------------------------------------------
# Azure credentials (Azurite on loopback): configuration and command line
# ---------------------------------------------------------------------------

AZURE_SAS = "sv=2026-01-01&sig=h4AzureSasSig%2BQa1Ws2Ed3Rf4"
AZURE_CONFIG_KEY = "h4AzureConfigKeyLp0Oi9Uy8Tr7Zx6Cv5Bn4Mm3=="


@pytest.mark.azure
def test_azure_credentials_appear_nowhere(azurite: Any, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    """An account key and a SAS token in the component's configuration, a connection
    string (holding Azurite's account key) on the command line: mark, show, sweep (dry
    run and real), status, and commands failing against a closed port, printed plain
    and with their stack trace, never show any of them."""
    import cloud_support

    caplog.set_level(logging.INFO)
    bed = cloud_support.make_bed(azurite, tmp_path, versions=40, seed=9)
    encoded = cloud_support.set_component_config(bed.url, bed.artifact_store_id, {
        "path": bed.root, "account_name": "devstoreaccount1", "account_key": AZURE_CONFIG_KEY,
        "sas_token": AZURE_SAS})
    connection = azurite.connection_string()
    options = ["--storage-option", f"connection_string={connection}"]
    work = tmp_path / "work"
    manifest = work / "mark.parquet"
    evidence = Evidence()
    evidence.result("mark --sizes --json", _ok(_invoke(
        "mark", "--db", bed.url, "--older-than", "0s", "--sizes", "--json", "--out",
        str(manifest), *options)))
    for args in (["show", str(manifest), "--format", "json"],
                 ["sweep", str(manifest), "--db", bed.url, "--dry-run", "--json", *options],
                 ["sweep", str(manifest), "--db", bed.url, "--yes", "--json", "--batch-size", "5",
                  *options],
                 ["status", str(manifest), "--json"]):
        evidence.result(" ".join(args[:2]), _ok(_invoke(*args)))
    assert not cloud_support.Bed.doomed(bed) & set(bed.listing())
    closed = f"http://127.0.0.1:{_closed_port()}"
    bed.restore()
    fresh = bed.fresh_manifest()
    _failing(evidence, "sweep against a closed port (SAS token)", "sweep", str(fresh), "--db",
             bed.url, "--yes", "--storage-option", "account_name=devstoreaccount1",
             "--storage-option", f"account_host={closed[len('http://'):]}",
             "--storage-option", f"sas_token={AZURE_SAS}")
    _failing(evidence, "sweep against a closed port (connection string)", "sweep", str(fresh),
             "--db", bed.url, "--yes", "--storage-option",
             f"connection_string={azurite.connection_string(closed)}")
    evidence.tree("files", work)
    evidence.tree("run", fresh.parent)
    evidence.logs(caplog.records)
    from emulators import AZURITE_KEY

    evidence.assert_free_of({
        "Azure account key (component configuration)": AZURE_CONFIG_KEY,
        "Azure SAS token": AZURE_SAS,
        "Azure SAS signature": "h4AzureSasSig",
        "Azure account key (connection string)": AZURITE_KEY,
        "component configuration blob": encoded.decode(),
    })
