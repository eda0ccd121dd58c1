"""The policy file of gc collect: parsing, every validation error (with its line and
key), and how rules become marks on disjoint scopes. No store needed: fast."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from artifact_gc.cli import cli
from artifact_gc.collect import PolicyError, load_policy, mark_scopes, parse_policy
from artifact_gc.collect.policy import DEFAULT_MAX_CANDIDATES, supported_mark_fields
from artifact_gc.collect.scopes import ordered_rules
from artifact_gc.errors import EXIT_USAGE

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "artifact-gc.toml"
ENV = {"ZENML_DB_PASSWORD": "pw-from-env", "AWS_ACCESS_KEY_ID": "AKIA-env",
       "AWS_SECRET_ACCESS_KEY": "secret-from-env"}

MINIMAL = '[manifests]\nlocation = "/tmp/m"\n'


def _error(text: str, env: dict[str, str] | None = None) -> PolicyError:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, env or {}, source="p.toml")
    return caught.value


def test_the_shipped_example_parses() -> None:
    policy = load_policy(EXAMPLE, ENV)
    assert policy.sweep is False and policy.sizes is True
    assert policy.db == "mysql+pymysql://zenml:pw-from-env@127.0.0.1:3306/zenml"
    assert policy.storage_options["secret"] == "secret-from-env"
    assert policy.storage_options["client_kwargs"] == {"region_name": "eu-west-1"}
    assert policy.defaults.older_than == timedelta(days=30) and policy.defaults.keep_latest == 3
    assert [(r.project, r.artifact) for r in policy.rules] == [
        ("research", None), (None, "checkpoint_*"), ("research", "dataset_*")]
    # A rule's unset keys come from [defaults].
    assert policy.rules[2].keep_latest == 3 and policy.rules[2].older_than == timedelta(days=90)
    assert policy.defaults.keep_tags == ("production",) == policy.rules[0].keep_tags
    assert policy.brakes.max_candidates == DEFAULT_MAX_CANDIDATES
    assert policy.brakes.max_bytes == 1 << 40
    # The policy's own description holds no storage option (no secret).
    assert "secret-from-env" not in str(policy.as_dict()) and "secret-from-env" not in repr(policy)


def test_minimal_policy_gets_the_documented_defaults() -> None:
    policy = parse_policy(MINIMAL, {})
    assert policy.sweep is False and policy.db is None and policy.rules == ()
    assert policy.defaults.older_than == timedelta(hours=24)
    assert policy.brakes.max_fraction == 0.5 and policy.brakes.jump_factor == 3.0


def test_check_prints_the_validated_policy(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(MINIMAL + "[brakes]\nmax_candidates = false\n")
    result = CliRunner().invoke(cli, ["collect", "--policy", str(tmp_path / "p.toml"),
                                      "--check"])
    assert result.exit_code == 0, result.output
    assert '"max_candidates": null' in result.output


@pytest.mark.parametrize(("text", "line", "key", "words"), [
    ("sweep = true\n[manifests\n", 2, None, "not valid TOML"),
    ("sweep = true\nswep = 1\n" + MINIMAL, 2, "swep", "unknown key"),
    (MINIMAL + "swep = 1\n", 3, "manifests.swep", "unknown key"),
    ("sweep = \"yes\"\n" + MINIMAL, 1, "sweep", "true or false"),
    ("[store]\ndb = \"x\"\n", None, "manifests.location", "required"),
    (MINIMAL + "[defaults]\nolder_than = \"3 days\"\n", 4, "defaults.older_than",
     "cannot read duration"),
    (MINIMAL + "[defaults]\nolder_than = 7\n", 4, "defaults.older_than", "duration string"),
    (MINIMAL + "[defaults]\nolder_than = \"6M\"\n", 4, "defaults.older_than", "ambiguous"),
    (MINIMAL + "[defaults]\nkeep_latest = -1\n", 4, "defaults.keep_latest", "at least 0"),
    (MINIMAL + "[defaults]\nkeep_lastest = 2\n", 4, "defaults.keep_lastest", "unknown key"),
    (MINIMAL + "[defaults]\nproject = \"a\"\n", 4, "defaults.project", "unknown key"),
    (MINIMAL + "[[rules]]\nolder_than = \"7d\"\n", 3, "rules[1]", "needs a project"),
    (MINIMAL + "[[rules]]\nproject = \"a\"\n\n[[rules]]\nartifact = \"x[\"\n", 7,
     "rules[2].artifact", "without a closing"),
    (MINIMAL + "[[rules]]\nartifact = \"[z-a]\"\n", 4, "rules[1].artifact", "empty"),
    (MINIMAL + "[[rules]]\nproject = \"a\"\norphan_files = true\n", 5,
     "rules[1].orphan_files", "store-wide"),
    (MINIMAL + "[[rules]]\nproject = \"a\"\norphan_code_uploads = true\n", 5,
     "rules[1].orphan_code_uploads", "store-wide"),
    (MINIMAL + "[defaults]\norphan_code_uploads = true\n", 4,
     "defaults.orphan_code_uploads", "needs orphan_files = true"),
    (MINIMAL + "[defaults]\norphan_files = true\norphan_code_uploads = 1\n", 5,
     "defaults.orphan_code_uploads", "true or false"),
    (MINIMAL + "[[rules]]\nproject = \"a\"\nkeep_tags = \"prod\"\n", 5,
     "rules[1].keep_tags", "list of tag names"),
    (MINIMAL + "[[rules]]\nproject = \"a\"\n[[rules]]\nproject = \"a\"\n", 5, "rules[2]",
     "same project and artifact"),
    (MINIMAL + "[brakes]\nmax_fraction = 1.5\n", 4, "brakes.max_fraction", "(0, 1]"),
    (MINIMAL + "[brakes]\nmax_bytes = \"lots\"\n", 4, "brakes.max_bytes", "number of bytes"),
    (MINIMAL + "[brakes]\njump_factor = 0.5\n", 4, "brakes.jump_factor", "at least 1"),
    (MINIMAL + "[brakes]\nmax_candidates = 1.5\n", 4, "brakes.max_candidates", "whole"),
    (MINIMAL + "[brakes]\nmax_speed = 1\n", 4, "brakes.max_speed", "unknown key"),
    ("sizes = false\n" + MINIMAL + "[brakes]\nmax_bytes = \"1GB\"\n", 5, "brakes.max_bytes",
     "needs sizes = true"),
    ("workers = 0\n" + MINIMAL, 1, "workers", "at least 1"),
    (MINIMAL + "[store]\nstore_roots = { abc = 3 }\n", 4, "store.store_roots.abc",
     "root URL"),
])
def test_every_validation_error_names_line_and_key(
        text: str, line: int | None, key: str | None, words: str) -> None:
    error = _error(text)
    assert error.line == line and error.key == key, error.message
    assert words in error.message
    where = f"p.toml:{line}" if line else "p.toml"
    assert error.message.startswith(f"{where}: {key + ': ' if key else ''}"), error.message


def test_secrets_come_from_the_environment_never_the_file() -> None:
    literal = MINIMAL + "[store.storage_options]\nendpoint_url = \"http://x\"\n" \
                        "secret = \"hunter2-literal\"\n"
    error = _error(literal)
    assert error.line == 5 and error.key == "store.storage_options.secret"
    assert "environment" in error.message and "hunter2" not in error.message
    nested = MINIMAL + "[store.storage_options.credentials]\naccess_token = \"abc\"\n"
    assert _error(nested).key == "store.storage_options.credentials.access_token"
    password = "[store]\ndb = \"mysql+pymysql://zenml:hunter2@h/zenml\"\n" + MINIMAL
    error = _error(password)
    assert (error.line, error.key) == (2, "store.db") and "hunter2" not in error.message
    # ${ENV} references are the way, and are expanded from the environment given.
    policy = parse_policy(
        "[store]\ndb = \"mysql+pymysql://zenml:${PW}@h/zenml\"\n"
        "[store.storage_options]\nkey = \"${KEY}\"\nkey_prefix = \"plain\"\n" + MINIMAL,
        {"PW": "p", "KEY": "k"})
    assert policy.db == "mysql+pymysql://zenml:p@h/zenml"
    assert policy.storage_options == {"key": "k", "key_prefix": "plain"}
    missing = _error("[store]\ndb = \"${NOT_SET_ANYWHERE}\"\n" + MINIMAL)
    assert (missing.line, missing.key) == (2, "store.db") and "NOT_SET_ANYWHERE" in missing.message


def test_fields_this_build_cannot_mark_are_refused_or_passed_through() -> None:
    """keep_tags and orphan_files reach the mark only when MarkOptions has them."""
    for key, value, flag in (("keep_tags", '["production"]', "--keep-tag"),
                             ("orphan_files", "true", "--orphan-files")):
        text = MINIMAL + f"[defaults]\n{key} = {value}\n"
        if key in supported_mark_fields():
            policy = parse_policy(text, {})
            options = mark_scopes(policy, None)[0].options
            assert getattr(options, key) == getattr(policy.defaults, key)
        else:
            error = _error(text)
            assert error.key == f"defaults.{key}" and error.line == 4
            assert "not supported by this build" in error.message and flag in error.message
    # Off or empty asks nothing of the mark.
    parse_policy(MINIMAL + "[defaults]\nkeep_tags = []\norphan_files = false\n", {})


def test_brakes_can_be_turned_off_and_sizes_read() -> None:
    policy = parse_policy(MINIMAL + "[brakes]\nmax_candidates = false\nmax_fraction = false\n"
                                    "max_bytes = \"2.5GiB\"\njump_factor = false\n", {})
    brakes = policy.brakes
    assert (brakes.max_candidates, brakes.max_fraction, brakes.jump_factor) == (None, None, None)
    assert brakes.max_bytes == int(2.5 * (1 << 30))


def test_bad_policy_on_the_command_line_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(MINIMAL + "[defaults]\nolder_than = \"soon\"\n")
    result = CliRunner().invoke(cli, ["collect", "--policy", str(path)])
    assert result.exit_code == EXIT_USAGE
    assert f"FAILED: {path}:4: defaults.older_than: cannot read duration" in result.output
    missing = CliRunner().invoke(cli, ["collect", "--policy", str(tmp_path / "nope.toml")])
    assert missing.exit_code == EXIT_USAGE and "cannot read the policy" in missing.output


RULES = MINIMAL + """
[defaults]
older_than = "30d"
[[rules]]
project = "research"
older_than = "7d"
[[rules]]
artifact = "checkpoint_*"
older_than = "14d"
[[rules]]
project = "research"
artifact = "dataset_*"
older_than = "90d"
[[rules]]
artifact = "check*"
older_than = "1d"
"""


def test_rules_claim_versions_in_the_documented_order() -> None:
    policy = parse_policy(RULES, {})
    assert [r.name for r in ordered_rules(policy)] == [
        "rules[3]", "rules[2]", "rules[4]", "rules[1]", "defaults"]
    scopes = {(s.rule.name, s.options.projects): s.options
              for s in mark_scopes(policy, ["default", "research", "other"])}
    research = ("research",)
    others = ("default", "other")
    assert set(scopes) == {("rules[3]", research), ("rules[2]", research),
                           ("rules[4]", research), ("rules[1]", research),
                           ("rules[2]", others), ("rules[4]", others), ("defaults", others)}
    # Each scope leaves out what the rules before it claimed, in its projects only.
    assert scopes[("rules[2]", research)].exclude_artifacts == ("dataset_*",)
    assert scopes[("rules[2]", others)].exclude_artifacts == ()
    assert scopes[("rules[4]", research)].exclude_artifacts == ("dataset_*", "checkpoint_*")
    assert scopes[("rules[1]", research)].artifacts == ()
    assert scopes[("rules[1]", research)].exclude_artifacts == (
        "dataset_*", "checkpoint_*", "check*")
    assert scopes[("defaults", others)].exclude_artifacts == ("checkpoint_*", "check*")
    assert scopes[("rules[1]", research)].older_than == timedelta(days=7)
    assert scopes[("defaults", others)].older_than == timedelta(days=30)


@pytest.mark.parametrize("name", ["checkpoint_1", "check", "dataset_a", "model", "x"])
@pytest.mark.parametrize("project", ["default", "research", "other"])
def test_every_version_falls_in_exactly_one_scope(name: str, project: str) -> None:
    import fnmatch

    policy = parse_policy(RULES, {})
    claimed = [s.rule.name for s in mark_scopes(policy, ["default", "research", "other"])
               if project in s.options.projects
               and (not s.options.artifacts
                    or any(fnmatch.fnmatchcase(name, p) for p in s.options.artifacts))
               and not any(fnmatch.fnmatchcase(name, p) for p in s.options.exclude_artifacts)]
    first = next(r.name for r in ordered_rules(policy)
                 if r.project in (None, project)
                 and (r.artifact is None or fnmatch.fnmatchcase(name, r.artifact)))
    assert claimed == [first]


def test_without_project_rules_the_marks_span_every_project() -> None:
    policy = parse_policy(MINIMAL + "[[rules]]\nartifact = \"ckpt*\"\n", {})
    scopes = mark_scopes(policy, None)
    assert [(s.rule.name, s.options.projects, s.options.artifacts,
             s.options.exclude_artifacts) for s in scopes] == [
        ("rules[1]", (), ("ckpt*",), ()), ("defaults", (), (), ("ckpt*",))]


def test_the_previous_collection_is_the_newest_record_of_the_same_store(
        tmp_path: Path) -> None:
    """The jump brake's reference: records of another store, unreadable ones and ones
    that never counted candidates are passed over."""
    import json

    from artifact_gc.collect.records import previous_record

    this = {"dialect": "sqlite", "database": "/s/zenml.db", "host": None, "port": None,
            "schema_version": "0.98.0", "store_id": None}
    other = {**this, "database": "/other/zenml.db"}

    def record(name: str, database: dict[str, object], candidates: int | None) -> None:
        (tmp_path / name).write_text(json.dumps({
            "collection_id": name, "database_fingerprint": database,
            "totals": None if candidates is None else {"candidates": candidates}}))

    assert previous_record(str(tmp_path), this) is None
    assert previous_record(str(tmp_path / "missing"), this) is None
    record("collection-20260101T000000Z-aaaaaaaa.json", this, 7)
    record("collection-20260102T000000Z-bbbbbbbb.json", this, None)
    record("collection-20260103T000000Z-cccccccc.json", other, 900)
    (tmp_path / "collection-20260104T000000Z-dddddddd.json").write_text("{not json")
    (tmp_path / "mark-20260105T000000Z-eeeeeeee.parquet").write_text("")
    found = previous_record(str(tmp_path), this)
    assert found is not None and found["collection_id"].endswith("aaaaaaaa.json")
    assert found["totals"]["candidates"] == 7
    assert found["record"] == str(tmp_path / "collection-20260101T000000Z-aaaaaaaa.json")


def test_orphan_code_uploads_reach_one_mark_with_orphan_files() -> None:
    """Files found by listing belong to no rule: only the last mark of a collection
    lists the stores, and it carries ``orphan_code_uploads`` with ``orphan_files``."""
    policy = parse_policy(MINIMAL + "[defaults]\norphan_files = true\norphan_code_uploads = true\n"
                                    "[[rules]]\nartifact = \"m*\"\nolder_than = \"7d\"\n", {})
    assert policy.defaults.orphan_code_uploads and policy.rules[0].orphan_code_uploads
    options = [scope.options for scope in mark_scopes(policy, None)]
    assert len(options) == 2
    assert [(o.orphan_files, o.orphan_code_uploads) for o in options] == [
        (False, False), (True, True)]
    assert policy.as_dict()["defaults"]["orphan_code_uploads"] is True
    plain = parse_policy(MINIMAL + "[defaults]\norphan_files = true\n", {})
    assert not mark_scopes(plain, None)[0].options.orphan_code_uploads
