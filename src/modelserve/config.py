"""Service configuration: ``modelserve.toml``, then ``MODELSERVE_*`` variables, then flags.

The file sits at the service root. Each later source overrides the earlier one key by key;
nested keys come from variables with ``__`` (``MODELSERVE_SERVER__WORKERS=4``). Everything is
validated by pydantic, and an unknown key or a bad value is reported with its dotted name and
where it came from (the file's path, the variable's name, or the flag).

Relative paths (a SQLite registry, a local artifact store, the cache) are resolved against the
directory holding ``modelserve.toml`` (or the working directory when there is no file), so the
embedded defaults keep everything under ``<root>/.modelserve/``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from modelserve.errors import ConfigError

__all__ = ["ModelConfig", "ServerConfig", "Settings", "load_settings"]

CONFIG_FILE = "modelserve.toml"
ENV_PREFIX = "MODELSERVE_"
DEFAULT_ALIAS = "production"


class ModelConfig(BaseModel):
    """One served model: its class, which version to serve, and per-model options."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    class_path: str = Field(alias="class", description="'package.module:Class'")
    alias: str | None = None
    version: int | None = Field(default=None, ge=1)
    atol: float | None = Field(default=None, ge=0)
    rtol: float | None = Field(default=None, ge=0)
    selftest_policy: Literal["refuse", "warn"] | None = None
    executor: Literal["auto", "inline", "thread"] = "auto"

    @model_validator(mode="after")
    def _one_reference(self) -> ModelConfig:
        if self.alias is not None and self.version is not None:
            raise ValueError("set either 'alias' or 'version', not both")
        return self

    @property
    def reference(self) -> str | int:
        """The alias or version number this service serves (``production`` by default)."""
        if self.version is not None:
            return self.version
        return self.alias or DEFAULT_ALIAS


class ServerConfig(BaseModel):
    """How ``modelserve serve`` runs: socket, processes, limits and timeouts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int | None = Field(default=None, ge=1, description="None: one per core")
    max_body_bytes: int = Field(default=1 << 20, ge=1)
    # Envoy's default upstream idle timeout is 1 hour; staying open longer means Envoy,
    # never the server, closes an idle connection, so Envoy never reuses a closed socket.
    keepalive_timeout: float = Field(default=3660.0, gt=0)
    graceful_timeout: float = Field(default=30.0, gt=0)
    max_requests: int = Field(default=0, ge=0, description="recycle a worker after N; 0: never")
    max_requests_jitter: int = Field(default=0, ge=0)
    predict_threads: int = Field(default=4, ge=1)
    inline_predict_ms: float = Field(default=2.0, ge=0)
    access_log: bool = True
    # Import the model classes (and the libraries they import) in the master before forking,
    # so every worker starts with them in memory: a respawned worker is ready in the time it
    # takes to read its artifacts, not to import scikit-learn again.
    preload: bool = True
    retry_after_seconds: int = Field(default=5, ge=0)


class Settings(BaseSettings):
    """The validated configuration of one service."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    service: str = "modelserve"
    root: Path = Field(default_factory=Path.cwd)
    registry_url: str = "sqlite:///.modelserve/registry.db"
    artifact_store: str = ".modelserve/artifacts"
    #: fsspec storage options of the artifact store (e.g. S3 ``client_kwargs.endpoint_url``).
    artifact_store_options: dict[str, Any] = Field(default_factory=dict)
    cache_dir: str = ".modelserve/cache"
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    server: ServerConfig = Field(default_factory=ServerConfig)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, *_: Any, **__: Any):  # type: ignore[no-untyped-def]
        # load_settings merges the file, the variables and the flags itself, so that it can
        # tell which of them a bad key came from; only the merged keyword arguments count.
        return (init_settings,)

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        root = self.root
        object.__setattr__(self, "registry_url", _resolve_sqlite(self.registry_url, root))
        object.__setattr__(self, "artifact_store", _resolve_local(self.artifact_store, root))
        object.__setattr__(self, "cache_dir", _resolve_local(self.cache_dir, root))
        return self

    @property
    def state_dir(self) -> Path:
        """``<root>/.modelserve``: where the embedded defaults keep their files."""
        return self.root / ".modelserve"


def _resolve_sqlite(url: str, root: Path) -> str:
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
        return prefix + str(root / url[len(prefix) :])
    return url


def _resolve_local(location: str, root: Path) -> str:
    if "://" in location:
        return location
    path = Path(location).expanduser()
    return str(path if path.is_absolute() else root / path)


def find_config(start: Path | None = None) -> Path | None:
    """``modelserve.toml`` in ``start`` (default: the working directory), if there is one."""
    candidate = (start or Path.cwd()) / CONFIG_FILE
    return candidate if candidate.is_file() else None


def load_settings(
    path: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Read ``modelserve.toml`` (if any), overlay ``MODELSERVE_*`` variables and flags.

    ``path`` is the file (or the directory holding it); when None, ``MODELSERVE_CONFIG`` or the
    working directory is looked at. ``overrides`` are flag values with dotted keys
    (``{"server.workers": 2}``); None values are ignored.
    """
    environ = os.environ if environ is None else environ
    file = _locate(path, environ)
    from_file = _read_toml(file) if file else {}
    from_env = _read_env(environ)
    from_flags = _expand_dotted({k: v for k, v in (overrides or {}).items() if v is not None})
    merged = _deep_merge(_deep_merge(from_file, from_env), from_flags)
    merged.setdefault("root", str(file.parent if file else Path.cwd()))
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, file, from_env, from_flags)) from None


def _locate(path: Path | str | None, environ: Mapping[str, str]) -> Path | None:
    if path is None:
        explicit = environ.get(ENV_PREFIX + "CONFIG")
        if not explicit:
            return find_config()
        path = explicit
    candidate = Path(path)
    if candidate.is_dir():
        candidate = candidate / CONFIG_FILE
    if not candidate.is_file():
        raise ConfigError(f"configuration file {candidate} does not exist")
    return candidate.resolve()


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        with file.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot be read: {exc}") from None


def _read_env(environ: Mapping[str, str]) -> dict[str, Any]:
    wanted = {k: v for k, v in environ.items() if k.upper().startswith(ENV_PREFIX)}
    wanted.pop(ENV_PREFIX + "CONFIG", None)
    if not wanted:
        return {}
    known = set(Settings.model_fields) - {"root"}
    for name in sorted(wanted):
        top = name[len(ENV_PREFIX) :].lower().split("__")[0]
        if top not in known:  # a typo would otherwise be ignored without a word
            raise ConfigError(
                f"invalid configuration:\n  environment variable {name}: unknown setting; "
                f"known: {', '.join(ENV_PREFIX + key.upper() for key in sorted(known))}, "
                f"{ENV_PREFIX}CONFIG"
            )
    try:
        return _parse_env(wanted)
    except Exception as exc:  # pydantic-settings raises SettingsError for unparsable JSON
        # The error names the field, not the variable; find the variable by parsing each alone.
        for name, value in sorted(wanted.items()):
            try:
                _parse_env({name: value})
            except Exception as single:
                cause = single.__cause__ or single
                key = name[len(ENV_PREFIX) :].lower().replace("__", ".")
                raise ConfigError(
                    f"invalid configuration:\n  environment variable {name}: {key}: "
                    f"cannot parse {value!r}: {cause}"
                ) from None
        raise ConfigError(f"environment: {exc}") from None


def _parse_env(variables: Mapping[str, str]) -> dict[str, Any]:
    source = EnvSettingsSource(
        Settings, env_prefix=ENV_PREFIX, env_nested_delimiter="__", case_sensitive=False
    )
    source.env_vars = {k.lower(): v for k, v in variables.items()}
    return dict(source())


def _expand_dotted(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def _has_key(tree: Mapping[str, Any], loc: tuple[str | int, ...]) -> bool:
    node: Any = tree
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _describe(
    exc: ValidationError,
    file: Path | None,
    from_env: Mapping[str, Any],
    from_flags: Mapping[str, Any],
) -> str:
    lines = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"]) or ("(root)",)
        key = ".".join(loc)
        if _has_key(from_flags, loc):
            origin = "command-line flag"
        elif _has_key(from_env, loc):
            origin = "environment variable " + ENV_PREFIX + "__".join(loc).upper()
        else:
            origin = str(file) if file else "defaults"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"{origin}: {key}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)
