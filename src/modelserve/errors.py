"""The exception tree of modelserve.

Every error modelserve raises on purpose is a ``ModelserveError``. Each class carries the
HTTP status and the CLI exit code it maps to, so the two edges (the HTTP layer and the CLI)
translate errors in one place each, and nothing here imports a web framework::

    ModelserveError                      500 / exit 1
    ├── ConfigError                      500 / exit 2   bad modelserve.toml, env or flag
    ├── ModelClassError                  500 / exit 2   class path does not import / is no Model
    ├── ArtifactError                    500 / exit 1   artifact missing, empty or unreadable
    │   └── DigestMismatchError          500 / exit 1   stored bytes differ from the manifest
    ├── RegistryError                    500 / exit 1
    │   ├── RegistryUnavailableError     503 / exit 1   database cannot be reached
    │   └── NotFoundError                404 / exit 1
    │       ├── ModelNotFoundError       404            unknown model name
    │       ├── VersionNotFoundError     404            unknown version number or alias
    │       └── AliasNotFoundError       404            alias has never been set
    ├── ModelLoadError                   500 / exit 1   the model class's load() raised
    ├── SelfTestFailedError              500 / exit 1   expectations or golden outputs differ
    └── RequestError                     400            a request the data plane refuses
        ├── InvalidRequestError          400            malformed body or wrong field types
        ├── UnknownModelError            404            model_id (or version) not served here
        ├── MethodNotAllowedError        405
        ├── PayloadTooLargeError         413
        ├── UnsupportedMediaTypeError    415
        ├── NotReadyError                503            model or service not ready (Retry-After)
        └── PredictError                 500            the model's predict() raised
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AliasNotFoundError",
    "ArtifactError",
    "ConfigError",
    "DigestMismatchError",
    "InvalidRequestError",
    "MethodNotAllowedError",
    "ModelClassError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelserveError",
    "NotFoundError",
    "NotReadyError",
    "PathNotFoundError",
    "PayloadTooLargeError",
    "PredictError",
    "RegistryError",
    "RegistryUnavailableError",
    "RequestError",
    "SelfTestFailedError",
    "UnknownModelError",
    "UnsupportedMediaTypeError",
    "VersionNotFoundError",
]


def _listing(existing: Iterable[object]) -> str:
    names = [str(item) for item in existing]
    return ", ".join(names) if names else "(none)"


class ModelserveError(Exception):
    """Base class of every error modelserve raises on purpose."""

    http_status: int = 500
    exit_code: int = 1


class ConfigError(ModelserveError):
    """The configuration (modelserve.toml, MODELSERVE_* variables or flags) is invalid."""

    exit_code = 2


class ModelClassError(ModelserveError):
    """A model class path does not import, or does not name a model class."""

    exit_code = 2


class ArtifactError(ModelserveError):
    """An artifact is missing, empty or cannot be read or written."""


class DigestMismatchError(ArtifactError):
    """Bytes fetched from the artifact store do not match the digest in the manifest."""


class RegistryError(ModelserveError):
    """The registry refused or failed an operation."""


class RegistryUnavailableError(RegistryError):
    """The registry database cannot be reached."""

    http_status = 503


class NotFoundError(RegistryError):
    """Something named does not exist; the message lists what does."""

    http_status = 404


class ModelNotFoundError(NotFoundError):
    """No model of that name is registered."""

    def __init__(self, name: str, existing: Iterable[object]) -> None:
        super().__init__(f"model {name!r} not found; registered models: {_listing(existing)}")
        self.name = name


class VersionNotFoundError(NotFoundError):
    """The model exists but has no such version."""

    def __init__(self, name: str, version: object, existing: Iterable[object]) -> None:
        super().__init__(f"model {name!r} has no version {version}; versions: {_listing(existing)}")
        self.name = name
        self.version = version


class AliasNotFoundError(NotFoundError):
    """The model exists but the alias has never pointed anywhere."""

    def __init__(self, name: str, alias: str, existing: Iterable[object]) -> None:
        super().__init__(f"model {name!r} has no alias {alias!r}; aliases: {_listing(existing)}")
        self.name = name
        self.alias = alias


class ModelLoadError(ModelserveError):
    """The model class's ``load`` raised."""


class SelfTestFailedError(ModelserveError):
    """A self-test found outputs that differ from the expectations or the golden outputs."""

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class RequestError(ModelserveError):
    """A request the data plane refuses; the message is safe to show to the caller."""

    http_status = 400


class InvalidRequestError(RequestError):
    """The request body is malformed or a field has the wrong type."""


class UnknownModelError(RequestError):
    """The request names a model or version this service does not serve."""

    http_status = 404


class PathNotFoundError(RequestError):
    """No route serves the request's path."""

    http_status = 404


class MethodNotAllowedError(RequestError):
    """The path exists but not for this HTTP method; ``allowed`` lists the methods it takes."""

    http_status = 405

    def __init__(self, method: str, path: str, allowed: list[str]) -> None:
        super().__init__(f"method {method} not allowed on {path}; allowed: {', '.join(allowed)}")
        self.allowed = allowed


class PayloadTooLargeError(RequestError):
    """The request body is over the configured limit."""

    http_status = 413


class UnsupportedMediaTypeError(RequestError):
    """The request's content type is not one the endpoint reads."""

    http_status = 415


class NotReadyError(RequestError):
    """The model or the service is not ready yet (loading, failed or draining)."""

    http_status = 503


class PredictError(RequestError):
    """The model's ``predict`` raised; the body says so without the traceback."""

    http_status = 500
