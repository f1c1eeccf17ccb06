"""Registry verbs: train, publish, models, versions, show, promote, rollback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from modelserve.cli.output import console, print_table
from modelserve.errors import ConfigError

__all__ = ["register"]


def _class_for(obj: Any, model: str, class_path: str | None) -> str:
    if class_path:
        return class_path
    models = obj.settings().models
    if model not in models:
        known = ", ".join(sorted(models)) or "(none)"
        raise ConfigError(
            f"model {model!r} is not in modelserve.toml (models: {known}); pass --class"
        )
    return str(models[model].class_path)


def _tolerance(obj: Any, model: str) -> dict[str, Any]:
    config = obj.settings().models.get(model)
    return {"atol": config.atol, "rtol": config.rtol} if config else {}


def _published(manifest: Any, report: Any) -> None:
    console().print(
        f"published [bold]{manifest.name}[/] version [bold]{manifest.version}[/] "
        f"({manifest.digest[:19]}…, {manifest.size} bytes); {report.summary()}"
    )


@click.command()
@click.argument("model")
@click.option(
    "--class", "class_path", help="'package.module:Class' (default: from modelserve.toml)"
)
@click.option("--promote", "alias", help="Also point this alias at the new version.")
@click.pass_obj
def train(obj: Any, model: str, class_path: str | None, alias: str | None) -> None:
    """Run MODEL's train() into a temporary directory, self-test it and publish it."""
    from modelserve.release import train_and_publish

    registry = obj.registry()
    manifest, report = train_and_publish(
        registry, model, _class_for(obj, model, class_path), **_tolerance(obj, model)
    )
    _published(manifest, report)
    if alias:
        move = registry.set_alias(model, alias, manifest.version)
        console().print(f"{model}@{alias}: {move.from_version} -> {move.to_version}")


@click.command()
@click.argument("model")
@click.option(
    "--artifact", required=True, type=click.Path(path_type=Path), help="File or directory."
)
@click.option(
    "--class", "class_path", help="'package.module:Class' (default: from modelserve.toml)"
)
@click.pass_obj
def publish(obj: Any, model: str, artifact: Path, class_path: str | None) -> None:
    """Self-test ARTIFACT with MODEL's class and publish it as the next version."""
    from modelserve.release import publish as publish_version

    registry = obj.registry()
    manifest, report = publish_version(
        registry, model, _class_for(obj, model, class_path), artifact, **_tolerance(obj, model)
    )
    _published(manifest, report)


@click.command()
@click.pass_obj
def models(obj: Any) -> None:
    """List registered models."""
    rows = [
        (
            m.name,
            m.latest_version,
            m.version_count,
            ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items())),
        )
        for m in obj.registry().models()
    ]
    print_table("models", ("model", "latest", "versions", "aliases"), rows)


@click.command()
@click.argument("model")
@click.pass_obj
def versions(obj: Any, model: str) -> None:
    """List the versions of MODEL."""
    registry = obj.registry()
    aliases: dict[int, list[str]] = {}
    for alias, version in registry.aliases(model).items():
        aliases.setdefault(version, []).append(alias)
    rows = [
        (
            m.version,
            ", ".join(sorted(aliases.get(m.version, []))),
            m.digest[:19] + "…",
            m.size,
            m.created_at,
            m.created_by,
            (m.git_commit or "")[:10],
        )
        for m in registry.versions(model)
    ]
    print_table(
        f"{model} versions",
        ("version", "aliases", "digest", "bytes", "created", "by", "commit"),
        rows,
    )


@click.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.pass_obj
def show(obj: Any, ref: str, as_json: bool) -> None:
    """Show one version's manifest: MODEL, MODEL@7 or MODEL@alias (default: latest)."""
    manifest = obj.registry().resolve(ref)
    data = manifest.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    rows = [
        (key, json.dumps(value, default=str) if not isinstance(value, str) else value)
        for key, value in data.items()
    ]
    print_table(f"{manifest.name} v{manifest.version}", ("field", "value"), rows)


@click.command()
@click.argument("model")
@click.argument("version", type=int)
@click.option("--alias", default="production", show_default=True)
@click.pass_obj
def promote(obj: Any, model: str, version: int, alias: str) -> None:
    """Point MODEL's ALIAS at VERSION (recorded in the alias history)."""
    move = obj.registry().set_alias(model, alias, version)
    console().print(f"{model}@{alias}: {move.from_version} -> {move.to_version}")


@click.command()
@click.argument("model")
@click.option("--alias", default="production", show_default=True)
@click.pass_obj
def rollback(obj: Any, model: str, alias: str) -> None:
    """Point MODEL's ALIAS back at the version it pointed to before."""
    move = obj.registry().rollback(model, alias)
    console().print(f"{model}@{alias}: {move.from_version} -> {move.to_version} (rollback)")


@click.command()
@click.argument("model")
@click.option("--alias", default=None, help="Only this alias.")
@click.pass_obj
def history(obj: Any, model: str, alias: str | None) -> None:
    """Show who moved MODEL's aliases, when, from where and to where."""
    rows = [
        (m.at, m.alias, m.from_version, m.to_version, m.actor)
        for m in obj.registry().alias_history(model, alias)
    ]
    print_table(f"{model} alias history", ("when", "alias", "from", "to", "who"), rows)


def register(group: click.Group) -> None:
    for command in (train, publish, models, versions, show, promote, rollback, history):
        group.add_command(command)
