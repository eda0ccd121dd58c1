"""Where a mark's output goes, and how the project installs (issue 10, defects 5 and 7).

- ``gc mark --out s3://bucket/folder`` probes the folder with ``--storage-option``:
  without them the probe reached for ambient AWS settings and treated the folder as
  a file name.
- ``pyproject.toml`` declares its license as an SPDX string, so an install prints no
  setuptools deprecation banner.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest

from artifact_gc.demo.synthetic import SyntheticSpec, create_sqlite_store, populate
from conftest import MotoS3
from s3_support import list_bucket, upload

REPO = Path(__file__).resolve().parent.parent
GC = str(Path(sys.executable).with_name("gc"))


def test_mark_out_to_a_remote_folder_uses_storage_options(
    moto_s3: MotoS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = create_sqlite_store(tmp_path / "zenml.db")
    populate(url, SyntheticSpec(versions=60, store_root=str(tmp_path / "store"), seed=5))
    client = moto_s3.client()
    # The folder exists (it holds an earlier manifest), so --out names a directory.
    upload(client, moto_s3.bucket, [("team/manifests/older.parquet", b"x")])
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ZENML_", "AWS_ENDPOINT_URL"))}
    # Nothing ambient points at the test server: only --storage-option does.
    env["AWS_ACCESS_KEY_ID"] = "wrong"
    env["AWS_SECRET_ACCESS_KEY"] = "wrong"
    done = subprocess.run(
        [GC, "mark", "--db", url, "--older-than", "0s", "--json",
         "--out", moto_s3.url("team/manifests"),
         "--storage-option", "key=testing", "--storage-option", "secret=testing",
         "--storage-option", f"client_kwargs.endpoint_url={moto_s3.endpoint_url}",
         "--storage-option", "client_kwargs.region_name=us-east-1"],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    keys = set(list_bucket(client, moto_s3.bucket))
    written = {k for k in keys if k.startswith("team/manifests/mark-")}
    # One new manifest inside the folder, named like a default manifest; nothing
    # written over the folder's own name, and no probe object left behind.
    assert len(written) == 1, keys
    assert "team/manifests" not in keys
    assert not any("/.probe-" in k for k in keys)


def test_license_is_an_spdx_string_with_no_deprecation_warning(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    # The build backend that reads an SPDX string without a warning.
    assert pyproject["build-system"]["requires"] == ["setuptools>=77"]

    # setuptools applies the file as a build does (README resolved from the repo).
    import setuptools
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    if int(setuptools.__version__.split(".")[0]) < 77:
        pytest.skip(f"setuptools {setuptools.__version__} in this venv predates SPDX strings")
    monkeypatch.chdir(REPO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        distribution = apply_configuration(Distribution(), REPO / "pyproject.toml")
    deprecations = [w for w in caught if "deprecat" in w.category.__name__.lower()]
    assert deprecations == [], [str(w.message)[:200] for w in deprecations]
    assert distribution.metadata.license_expression == "Apache-2.0"
