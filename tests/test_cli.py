"""The ``modelserve`` command end to end, in-process, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import junitparser
import pytest
from click.testing import CliRunner, Result

from modelserve.cli import main

pytestmark = pytest.mark.usefixtures("clean_env", "fast_fingerprint")

UNREACHABLE = "postgresql+psycopg://postgres@127.0.0.1:1/test"

#: Team code: adds the artifact's bias to x. ``{drift}`` is appended to the prediction and
#: ``{expected}`` are the hand-written expectations, so a test can change the code.
ADDER = """
import json
from pathlib import Path

import modelserve


class Adder(modelserve.Model):
    atol = 1e-6
    rtol = 0.0

    def train(self, out_dir):
        (Path(out_dir) / "weights.json").write_text(json.dumps({{"bias": 1.5}}))

    def load(self, file):
        path = Path(file)
        path = path / "weights.json" if path.is_dir() else path
        self.bias = json.loads(path.read_text())["bias"]

    def predict(self, features):
        return features["x"] + self.bias + {drift}

    @property
    def test_data(self):
        return [({{"x": 1.0}}, {expected[0]!r}), ({{"x": 2.0}}, {expected[1]!r})]
"""


def adder_source(drift: float = 0.0, expected: tuple[float, float] = (2.5, 3.5)) -> str:
    return ADDER.format(drift=repr(drift), expected=expected)


@dataclass
class Service:
    """A service repo in a temporary directory, with the CLI run inside it."""

    root: Path
    module: str
    team_code: Any

    @property
    def store(self) -> Path:
        return self.root / ".modelserve" / "artifacts"

    @property
    def cache(self) -> Path:
        return self.root / ".modelserve" / "cache"

    def write_model(self, source: str) -> None:
        """Change the team's code (as a pull request would); the next import reads it."""
        self.team_code.write(source, self.module)

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, f"{args}: {result.output}"
        return result.stdout

    def manifest(self, ref: str) -> dict[str, Any]:
        return json.loads(self.ok("show", ref, "--json"))


@pytest.fixture
def service(database_url: str, team_code: Any, monkeypatch: pytest.MonkeyPatch) -> Service:
    root = team_code.directory
    module = team_code.write(adder_source())
    (root / "modelserve.toml").write_text(
        f'service = "test"\nregistry_url = "{database_url}"\n\n'
        f'[models.adder]\nclass = "{module}:Adder"\nalias = "production"\n'
    )
    monkeypatch.chdir(root)
    return Service(root, module, team_code)


@pytest.fixture
def published(service: Service) -> Service:
    """adder v1 (production) and v2, both trained by the CLI."""
    service.ok("train", "adder", "--promote", "production")
    service.ok("train", "adder")
    return service


def _one_error_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def _squash(text: str) -> str:
    """Table output with borders and line breaks reduced to single spaces."""
    for border in "│┃║":
        text = text.replace(border, " ")
    return " ".join(text.split())


# ------------------------------------------------------------------ registry verbs


def test_train_publishes_a_version_and_can_promote_it(service: Service) -> None:
    output = service.ok("train", "adder", "--promote", "production")

    assert "published adder version 1" in output
    assert "adder v1: 2/2 cases passed" in output
    assert "adder@production: None -> 1" in output
    manifest = service.manifest("adder@production")
    assert manifest["version"] == 1
    assert manifest["golden"] == [2.5, 3.5]
    assert manifest["class_path"] == f"{service.module}:Adder"
    assert (manifest["kind"], manifest["filename"]) == ("dir", "adder")


def test_publish_registers_an_artifact_with_the_class_from_the_config(
    service: Service, tmp_path: Path
) -> None:
    artifact = tmp_path / "weights.json"
    artifact.write_text('{"bias": 1.5}')

    output = service.ok("publish", "adder", "--artifact", str(artifact))

    assert "published adder version 1" in output
    manifest = service.manifest("adder")
    assert (manifest["kind"], manifest["filename"]) == ("file", "weights.json")


def test_publish_with_an_explicit_class_registers_a_model_missing_from_the_config(
    service: Service, tmp_path: Path
) -> None:
    artifact = tmp_path / "weights.json"
    artifact.write_text('{"bias": 1.5}')

    service.ok(
        "publish", "other", "--artifact", str(artifact), "--class", f"{service.module}:Adder"
    )

    assert service.manifest("other")["version"] == 1


def test_a_model_missing_from_the_config_needs_a_class(service: Service) -> None:
    result = service.run("train", "other")

    assert result.exit_code == 2
    line = _one_error_line(result)
    assert "'other' is not in modelserve.toml" in line
    assert "models: adder" in line
    assert "--class" in line


def test_models_and_versions_list_what_is_registered(published: Service) -> None:
    models = _squash(published.ok("models"))
    versions = _squash(published.ok("versions", "adder"))

    assert "adder 2 2 production→1" in models
    assert "1 production sha256:" in versions
    assert "2 sha256:" in versions


@pytest.mark.parametrize(
    ("ref", "version"),
    [("adder", 2), ("adder@latest", 2), ("adder@1", 1), ("adder@2", 2), ("adder@production", 1)],
)
def test_show_resolves_versions_and_aliases(published: Service, ref: str, version: int) -> None:
    assert published.manifest(ref)["version"] == version


def test_show_prints_the_manifest_as_a_table(published: Service) -> None:
    table = _squash(published.ok("show", "adder@1"))

    assert "adder v1" in table
    assert "golden [2.5, 3.5]" in table
    assert '"python":' in table


def test_promote_rollback_and_history(published: Service) -> None:
    assert "adder@production: 1 -> 2" in published.ok("promote", "adder", "2")
    assert published.manifest("adder@production")["version"] == 2

    assert "adder@production: 2 -> 1 (rollback)" in published.ok("rollback", "adder")
    assert published.manifest("adder@production")["version"] == 1

    rows = [_squash(line) for line in published.ok("history", "adder").splitlines()]
    moves = [row.partition(" production ")[2].split() for row in rows if " production " in row]
    # from, to, who: first set (no from), promote, rollback
    assert [move[:-1] for move in moves] == [["1"], ["1", "2"], ["2", "1"]]
    assert len({move[-1] for move in moves}) == 1


def test_promote_to_another_alias_leaves_production_alone(published: Service) -> None:
    published.ok("promote", "adder", "2", "--alias", "canary")

    assert published.manifest("adder@canary")["version"] == 2
    assert published.manifest("adder@production")["version"] == 1


# ------------------------------------------------------------------ registry errors


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["show", "nosuch"], ["model 'nosuch' not found", "registered models: adder"]),
        (["versions", "nosuch"], ["model 'nosuch' not found", "registered models: adder"]),
        (["history", "nosuch"], ["model 'nosuch' not found", "registered models: adder"]),
        (["promote", "nosuch", "1"], ["model 'nosuch' not found", "registered models: adder"]),
        (["rollback", "nosuch"], ["model 'nosuch' not found", "registered models: adder"]),
        (["show", "adder@9"], ["'adder' has no version 9", "versions: 1, 2"]),
        (["show", "adder@canary"], ["'adder' has no alias 'canary'", "aliases: production"]),
        (["promote", "adder", "9"], ["'adder' has no version 9", "versions: 1, 2"]),
    ],
)
def test_an_unknown_model_or_version_is_named_with_what_exists(
    published: Service, args: list[str], fragments: list[str]
) -> None:
    result = published.run(*args)

    assert result.exit_code == 1
    line = _one_error_line(result)
    for fragment in fragments:
        assert fragment in line


def test_promote_to_a_missing_version_leaves_the_alias_unchanged(published: Service) -> None:
    result = published.run("promote", "adder", "7")

    assert result.exit_code == 1
    assert "no version 7" in _one_error_line(result)
    assert published.manifest("adder@production")["version"] == 1
    rows = [_squash(line) for line in published.ok("history", "adder").splitlines()]
    assert len([row for row in rows if " production " in row]) == 1  # no move was recorded


@pytest.mark.parametrize(
    ("alias", "fragment"),
    [
        ("production", "alias 'production' of model 'adder' has no earlier version to roll back"),
        ("canary", "model 'adder' has no alias 'canary'; aliases: production"),
    ],
)
def test_rollback_without_history_says_why(published: Service, alias: str, fragment: str) -> None:
    result = published.run("rollback", "adder", "--alias", alias)

    assert result.exit_code == 1
    assert fragment in _one_error_line(result)
    assert published.manifest("adder@production")["version"] == 1


def test_a_publish_that_fails_its_self_test_prints_the_differences_and_registers_nothing(
    published: Service,
) -> None:
    published.write_model(adder_source(drift=0.01))

    result = published.run("train", "adder")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: self-test failed, nothing published")
    assert "2.51" in _squash(result.stderr)
    assert "Traceback" not in result.output
    assert published.manifest("adder")["version"] == 2  # still v2: nothing was registered


@pytest.mark.parametrize(
    "args",
    [["models"], ["versions", "adder"], ["show", "adder"], ["train", "adder"], ["selftest"]],
)
def test_an_unreachable_registry_is_one_line_without_a_traceback(
    service: Service, args: list[str]
) -> None:
    result = service.run("--registry-url", UNREACHABLE, *args)

    assert result.exit_code == 1
    line = _one_error_line(result)
    assert "127.0.0.1:1" in line
    assert "unreachable" in line


def test_debug_shows_the_traceback(service: Service) -> None:
    result = service.run("--debug", "--registry-url", UNREACHABLE, "models")

    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("error: registry database")


def test_an_unreachable_registry_in_a_real_process_prints_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELSERVE_")}
    result = subprocess.run(
        [sys.executable, "-m", "modelserve", "--registry-url", UNREACHABLE, "models"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"error: registry database {UNREACHABLE} is unreachable: connection refused"
    ]


# ------------------------------------------------------------------ configuration errors


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("colour = 'red'\n", "models.adder.colour: unknown key"),
        ("version = 'two'\n", "models.adder.version:"),
        ("version = 2\n", "models.adder: Value error, set either 'alias' or 'version'"),
    ],
)
@pytest.mark.parametrize("verb", [["models"], ["selftest"], ["train", "adder"]])
def test_a_malformed_config_exits_2_naming_the_file_and_the_key(
    service: Service, extra: str, key: str, verb: list[str]
) -> None:
    config = service.root / "modelserve.toml"
    config.write_text(config.read_text() + extra)

    result = service.run(*verb)

    assert result.exit_code == 2
    assert f"{config}: {key}" in result.stderr
    assert "Traceback" not in result.output


def test_a_missing_explicit_config_exits_2(service: Service) -> None:
    result = service.run("--config", "nowhere/modelserve.toml", "models")

    assert result.exit_code == 2
    assert "nowhere/modelserve.toml does not exist" in _one_error_line(result)


# ------------------------------------------------------------------ selftest (checkpoint 3)


@pytest.mark.parametrize(
    ("drift", "exit_code"),
    [(0.0, 0), (1e-9, 0), (5e-7, 0), (0.01, 1), (-0.01, 1)],
)
def test_selftest_fails_only_when_the_code_drifts_beyond_tolerance(
    published: Service, drift: float, exit_code: int
) -> None:
    published.write_model(adder_source(drift=drift))

    result = published.run("selftest")

    assert result.exit_code == exit_code, result.output
    summary = _squash(result.stdout)
    if exit_code == 0:
        assert "adder production 1 pass 2/2 cases passed" in summary
    else:
        assert "adder production 1 fail 0/2 cases passed" in summary
        assert "0 expected $ 2.5 " in summary
        assert "0 golden $ 2.5 " in summary
        assert "|a-b|=0.01 > atol+rtol*|b|=1e-06" in summary


def test_selftest_catches_drift_from_the_golden_outputs_when_expectations_moved_along(
    published: Service, tmp_path: Path
) -> None:
    # a pull request changes the code and "fixes" the canaries to match: only the golden
    # outputs recorded at publish still notice that the served version would now differ
    published.write_model(adder_source(drift=0.01, expected=(2.51, 3.51)))
    junit = tmp_path / "reports" / "selftest.xml"

    result = published.run("selftest", "--junit", str(junit))

    assert result.exit_code == 1
    summary = _squash(result.stdout)
    assert "0 golden $ 2.5 2.51" in summary
    assert " expected $ " not in summary
    failures = [
        case for case in ET.parse(junit).iter("testcase") if case.find("failure") is not None
    ]
    assert len(failures) == 2
    text = failures[0].find("failure").text or ""
    assert "check: golden" in text
    assert "check: expected" not in text


def test_selftest_writes_junit_xml_with_a_failure_per_drifted_case(
    published: Service, tmp_path: Path
) -> None:
    published.write_model(
        adder_source(drift=0.0).replace(
            'return features["x"] + self.bias + 0.0',
            'return features["x"] + self.bias + (0.01 if features["x"] > 1.5 else 0.0)',
        )
    )
    junit = tmp_path / "selftest.xml"

    result = published.run("selftest", "--junit", str(junit))

    assert result.exit_code == 1
    assert f"JUnit XML written to {junit}" in _squash(result.stdout)
    xml = junitparser.JUnitXml.fromfile(str(junit))
    suites = list(xml)
    assert [suite.name for suite in suites] == ["adder v1"]
    outcome = {case.name: [type(r).__name__ for r in case.result] for case in suites[0]}
    assert outcome == {"case 0": [], "case 1": ["Failure"]}
    root = ET.parse(junit).getroot()
    assert (root.tag, root.get("tests"), root.get("failures"), root.get("errors")) == (
        "testsuites",
        "2",
        "1",
        "0",
    )
    failure = root.find(".//testcase[@name='case 1']/failure")
    assert failure is not None
    assert "expected 3.5, actual 3.51" in (failure.get("message") or "")


def test_selftest_junit_of_a_passing_run_has_no_failures(
    published: Service, tmp_path: Path
) -> None:
    junit = tmp_path / "selftest.xml"

    assert published.run("selftest", "--junit", str(junit)).exit_code == 0

    suite = next(iter(junitparser.JUnitXml.fromfile(str(junit))))
    assert (suite.tests, suite.failures, suite.errors) == (2, 0, 0)


def test_selftest_of_a_model_not_in_the_config_exits_2(published: Service) -> None:
    result = published.run("selftest", "adder", "nosuch")

    assert result.exit_code == 2
    line = _one_error_line(result)
    assert "nosuch" in line
    assert "models: adder" in line


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        ([], "model 'adder' not found; registered models: (none)"),
        ([["train", "adder"]], "model 'adder' has no alias 'production'"),
    ],
    ids=["never published", "alias never set"],
)
def test_selftest_of_a_model_without_its_version_fails_naming_it(
    service: Service, tmp_path: Path, setup: list[list[str]], fragment: str
) -> None:
    for args in setup:
        service.ok(*args)
    junit = tmp_path / "selftest.xml"

    result = service.run("selftest", "--junit", str(junit))

    assert result.exit_code == 1
    assert fragment in _squash(result.stdout)
    assert fragment in (ET.parse(junit).find(".//error").get("message") or "")


def test_a_tampered_artifact_fails_its_digest_check_and_is_not_cached(service: Service) -> None:
    service.ok("train", "adder", "--promote", "production")
    digest = service.manifest("adder@production")["digest"].removeprefix("sha256:")
    blob = service.store / "sha256" / digest
    assert blob.is_file()
    assert not (service.cache / digest).exists()  # nothing fetched yet: the store is read
    blob.write_bytes(blob.read_bytes() + b"tampered")

    result = service.run("selftest")

    assert result.exit_code == 1
    summary = _squash(result.stdout)
    assert "does not match its manifest" in summary
    assert f"expected sha256:{digest}" in summary
    assert not (service.cache / digest).exists()
    assert [p.name for p in service.cache.iterdir() if p.name.startswith(".partial")] == []


def test_a_verified_artifact_is_cached_under_its_digest(service: Service) -> None:
    service.ok("train", "adder", "--promote", "production")
    digest = service.manifest("adder@production")["digest"].removeprefix("sha256:")

    assert service.run("selftest").exit_code == 0

    assert json.loads((service.cache / digest / "adder" / "weights.json").read_text()) == {
        "bias": 1.5
    }


@pytest.mark.parametrize(
    "args", [["models"], ["show", "nosuch"], ["selftest"], ["rollback", "adder"]]
)
def test_every_command_closes_the_registry_it_opened(
    published: Service, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    from modelserve.registry import Registry

    opened: list[Registry] = []
    closed: list[Registry] = []
    original_init, original_close = Registry.__init__, Registry.close

    def recording_init(self: Registry, *a: Any, **k: Any) -> None:
        original_init(self, *a, **k)
        opened.append(self)

    def recording_close(self: Registry) -> None:
        closed.append(self)
        original_close(self)

    monkeypatch.setattr(Registry, "__init__", recording_init)
    monkeypatch.setattr(Registry, "close", recording_close)

    published.run(*args)

    assert len(opened) == 1
    assert closed == opened


def test_a_config_given_from_elsewhere_keeps_state_and_code_beside_the_file(
    tmp_path: Path, team_code: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = team_code.directory
    module = team_code.write(adder_source())
    (root / "modelserve.toml").write_text(f'[models.adder]\nclass = "{module}:Adder"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    result = CliRunner().invoke(main, ["-c", str(root), "train", "adder"])

    assert result.exit_code == 0, result.output
    assert (root / ".modelserve" / "registry.db").is_file()
    assert list((root / ".modelserve" / "artifacts" / "sha256").iterdir())
    assert list(elsewhere.iterdir()) == []
