"""The ``modelserve`` command.

Errors become exit codes here and nowhere else: a :class:`ModelserveError` prints one line
(``error: ...``) and exits with the code its class carries (2 for usage and configuration
errors, 1 otherwise); ``--debug`` shows the traceback as well.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from modelserve.config import Settings, load_settings
from modelserve.errors import ModelserveError

__all__ = ["main"]


class Context:
    """What every verb needs: the settings (read lazily) and the debug flag."""

    def __init__(self, config: Path | None, debug: bool, overrides: dict[str, Any]) -> None:
        self.config = config
        self.debug = debug
        self.overrides = overrides
        self._settings: Settings | None = None
        self._registry: Any = None

    def settings(self, **more: Any) -> Settings:
        if self._settings is None or more:
            self._settings = load_settings(self.config, {**self.overrides, **more})
            root = str(self._settings.root)
            if root not in sys.path:
                sys.path.insert(0, root)  # model classes live in the service repo
        return self._settings

    def registry(self) -> Any:
        """The registry, opened once and closed when the command ends (even on error)."""
        from modelserve.registry import Registry

        if self._registry is None:
            self._registry = Registry.from_settings(self.settings())
            click.get_current_context().call_on_close(self._close_registry)
        return self._registry

    def _close_registry(self) -> None:
        registry, self._registry = self._registry, None
        if registry is not None:
            registry.close()


class ModelserveGroup(click.Group):
    """Maps ModelserveError to its exit code and a one-line message."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModelserveError as exc:
            debug = isinstance(ctx.obj, Context) and ctx.obj.debug
            if debug:
                import traceback

                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            report = getattr(exc, "report", None)
            if report is not None and not debug:
                from modelserve.cli.output import print_report

                print_report(report, err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=ModelserveGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    type=click.Path(path_type=Path),
    help="modelserve.toml (or its directory); default: ./modelserve.toml",
)
@click.option("--registry-url", help="Registry database URL (overrides the file).")
@click.option("--artifact-store", help="Artifact store URL or path (overrides the file).")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.version_option(package_name="modelserve")
@click.pass_context
def main(
    ctx: click.Context,
    config: Path | None,
    registry_url: str | None,
    artifact_store: str | None,
    debug: bool,
) -> None:
    """Serve team-owned ML models: publish versions, self-test them, serve them over HTTP."""
    ctx.obj = Context(
        config, debug, {"registry_url": registry_url, "artifact_store": artifact_store}
    )


from modelserve.cli import registry_verbs, selftest_verb, serve_verb  # noqa: E402

registry_verbs.register(main)
selftest_verb.register(main)
serve_verb.register(main)
