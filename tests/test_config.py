"""Service configuration: modelserve.toml, then MODELSERVE_* variables, then flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve.config import ModelConfig, load_settings
from modelserve.errors import ConfigError

pytestmark = pytest.mark.usefixtures("clean_env")

GOOD_MODEL = '[models.churn]\nclass = "team.churn:Churn"\n'


def _write(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "modelserve.toml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------ malformed modelserve.toml


@pytest.mark.parametrize(
    ("toml", "key", "reason"),
    [
        pytest.param("bogus = 1\n", "bogus", "unknown key", id="unknown top-level key"),
        pytest.param("[server]\nbogus = 1\n", "server.bogus", "unknown key", id="unknown nested"),
        pytest.param(
            GOOD_MODEL + "colour = 'red'\n",
            "models.churn.colour",
            "unknown key",
            id="unknown model key",
        ),
        pytest.param(
            "[server]\nport = 'eighty'\n", "server.port", "valid integer", id="port not a number"
        ),
        pytest.param("[server]\nport = 70000\n", "server.port", "65535", id="port out of range"),
        pytest.param(
            "[server]\ngraceful_timeout = 0\n",
            "server.graceful_timeout",
            "greater than 0",
            id="zero grace period",
        ),
        pytest.param("models = 3\n", "models", "dictionary", id="models not a table"),
        pytest.param(
            GOOD_MODEL + "alias = 'production'\nversion = 3\n",
            "models.churn",
            "either 'alias' or 'version'",
            id="alias and version both set",
        ),
        pytest.param(
            "[models.churn]\nalias = 'production'\n",
            "models.churn.class",
            "required",
            id="missing class",
        ),
        pytest.param(
            GOOD_MODEL + "version = 0\n",
            "models.churn.version",
            "greater than or equal to 1",
            id="version 0",
        ),
        pytest.param(
            GOOD_MODEL + "selftest_policy = 'maybe'\n",
            "models.churn.selftest_policy",
            "'refuse' or 'warn'",
            id="unknown self-test policy",
        ),
        pytest.param(
            GOOD_MODEL + "atol = -1.0\n",
            "models.churn.atol",
            "greater than or equal to 0",
            id="negative atol",
        ),
    ],
)
def test_a_malformed_file_is_reported_with_its_path_and_dotted_key(
    tmp_path: Path, toml: str, key: str, reason: str
) -> None:
    path = _write(tmp_path / "svc", toml)

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    message = str(caught.value)
    assert f"{path}: {key}: " in message
    assert reason in message


def test_invalid_toml_syntax_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "svc", 'service = "x"\n[models.churn\nclass = "a:B"\n')

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    message = str(caught.value)
    assert str(path) in message
    assert "not valid TOML" in message
    assert "line 2" in message


def test_every_problem_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path / "svc", "bogus = 1\n[server]\nport = 'x'\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})

    assert "bogus: unknown key" in str(caught.value)
    assert "server.port:" in str(caught.value)


def test_a_valid_file_is_read_into_settings(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "svc",
        'service = "rides"\n'
        + GOOD_MODEL
        + "atol = 0.5\n[models.eta]\nclass = 'team.eta:Eta'\nversion = 4\n"
        + "[server]\nport = 9000\nworkers = 2\n",
    )

    settings = load_settings(path, environ={})

    assert settings.service == "rides"
    assert settings.models == {
        "churn": ModelConfig(class_path="team.churn:Churn", atol=0.5),
        "eta": ModelConfig(class_path="team.eta:Eta", version=4),
    }
    assert settings.models["churn"].reference == "production"
    assert settings.models["eta"].reference == 4
    assert (settings.server.port, settings.server.workers) == (9000, 2)


# ------------------------------------------------------------------ precedence


def test_a_variable_overrides_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "svc", "[server]\nport = 8100\n" + GOOD_MODEL + "alias = 'canary'\n")

    settings = load_settings(
        path,
        environ={"MODELSERVE_SERVER__PORT": "8200", "MODELSERVE_MODELS__CHURN__ALIAS": "shadow"},
    )

    assert settings.server.port == 8200
    assert settings.models["churn"].alias == "shadow"
    assert settings.models["churn"].class_path == "team.churn:Churn"  # merged, not replaced


def test_a_flag_overrides_the_variable_and_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "svc", "[server]\nport = 8100\n")

    settings = load_settings(
        path,
        overrides={"server.port": 8300, "server.workers": None},
        environ={"MODELSERVE_SERVER__PORT": "8200", "MODELSERVE_SERVER__WORKERS": "3"},
    )

    assert settings.server.port == 8300
    assert settings.server.workers == 3  # a flag left unset (None) does not override


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"MODELSERVE_SERVER__PORT": "eighty"}, "MODELSERVE_SERVER__PORT"),
        ({"MODELSERVE_SERVER__MAX_REQUESTS": "-1"}, "MODELSERVE_SERVER__MAX_REQUESTS"),
        ({"MODELSERVE_REGISTRYURL": "sqlite:///x.db"}, "MODELSERVE_REGISTRYURL"),
        ({"MODELSERVE_SERVER__BOGUS": "1"}, "MODELSERVE_SERVER__BOGUS"),
        ({"MODELSERVE_MODELS__CHURN__VERSION": "0"}, "MODELSERVE_MODELS__CHURN__VERSION"),
        ({"MODELSERVE_SERVER": "{not json"}, "MODELSERVE_SERVER"),
        ({"MODELSERVE_MODELS": "[1, 2"}, "MODELSERVE_MODELS"),
    ],
)
def test_a_bad_variable_is_named_in_the_error(
    tmp_path: Path, environ: dict[str, str], variable: str
) -> None:
    path = _write(tmp_path / "svc", GOOD_MODEL)

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=environ)

    assert f"environment variable {variable}:" in str(caught.value)


def test_a_bad_flag_is_named_as_a_flag(tmp_path: Path) -> None:
    path = _write(tmp_path / "svc", "[server]\nport = 8100\n")

    with pytest.raises(ConfigError) as caught:
        load_settings(path, overrides={"server.port": "x"}, environ={})

    assert "command-line flag: server.port:" in str(caught.value)


# ------------------------------------------------------------------ locating and paths


def test_relative_paths_are_resolved_against_the_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = tmp_path / "svc"
    path = _write(
        service,
        'registry_url = "sqlite:///state/registry.db"\n'
        'artifact_store = "store"\n'
        'cache_dir = "../shared-cache"\n',
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    settings = load_settings(path, environ={})

    resolved = path.resolve().parent
    assert settings.root == resolved
    assert settings.registry_url == f"sqlite:///{resolved}/state/registry.db"
    assert settings.artifact_store == str(resolved / "store")
    assert settings.cache_dir == str(resolved / "../shared-cache")


def test_the_defaults_keep_everything_under_the_state_directory(tmp_path: Path) -> None:
    path = _write(tmp_path / "svc", "")

    settings = load_settings(path, environ={})

    state = path.resolve().parent / ".modelserve"
    assert settings.state_dir == state
    assert settings.registry_url == f"sqlite:///{state}/registry.db"
    assert settings.artifact_store == str(state / "artifacts")
    assert settings.cache_dir == str(state / "cache")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("registry_url", "sqlite:////var/lib/ms/registry.db"),
        ("registry_url", "sqlite:///:memory:"),
        ("registry_url", "postgresql+psycopg://ms@db.internal/registry"),
        ("artifact_store", "s3://bucket/models"),
        ("artifact_store", "/srv/artifacts"),
        ("cache_dir", "/var/cache/ms"),
    ],
)
def test_absolute_paths_and_remote_urls_are_kept(tmp_path: Path, key: str, value: str) -> None:
    path = _write(tmp_path / "svc", f'{key} = "{value}"\n')

    settings = load_settings(path, environ={})

    assert getattr(settings, key) == value


def test_a_relative_path_from_a_variable_is_resolved_against_the_files_directory(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path / "svc", "")

    settings = load_settings(path, environ={"MODELSERVE_ARTIFACT_STORE": "blobs"})

    assert settings.artifact_store == str(path.resolve().parent / "blobs")


def test_a_directory_stands_for_the_file_inside_it(tmp_path: Path) -> None:
    _write(tmp_path / "svc", 'service = "from-dir"\n')

    assert load_settings(tmp_path / "svc", environ={}).service == "from-dir"


def test_the_config_variable_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "svc", 'service = "from-env"\n')

    assert load_settings(environ={"MODELSERVE_CONFIG": str(path)}).service == "from-env"


def test_the_working_directorys_file_is_used_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "svc", 'service = "from-cwd"\n')
    monkeypatch.chdir(tmp_path / "svc")

    assert load_settings(environ={}).service == "from-cwd"


def test_no_file_at_all_gives_the_defaults_rooted_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    settings = load_settings(environ={})

    assert settings.models == {}
    assert settings.root == tmp_path


@pytest.mark.parametrize("source", ["argument", "variable"])
def test_an_explicit_file_that_does_not_exist_is_an_error(tmp_path: Path, source: str) -> None:
    missing = tmp_path / "nope" / "modelserve.toml"
    path, environ = (
        (missing, {}) if source == "argument" else (None, {"MODELSERVE_CONFIG": str(missing)})
    )

    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=environ)

    assert str(missing) in str(caught.value)
    assert "does not exist" in str(caught.value)
