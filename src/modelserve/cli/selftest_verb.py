"""``modelserve selftest``: self-test checkpoint 3, for CI and pull requests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from modelserve.cli.output import console, print_report, print_table
from modelserve.errors import ConfigError, ModelserveError

__all__ = ["register"]


@click.command()
@click.argument("names", nargs=-1)
@click.option("--junit", type=click.Path(path_type=Path), help="Also write JUnit XML here.")
@click.pass_obj
def selftest(obj: Any, names: tuple[str, ...], junit: Path | None) -> None:
    """Load each served model's configured version with the current code and self-test it.

    Compares with the hand-written expectations and the golden outputs recorded at publish.
    Exits 1 when any model fails, 2 on a usage or configuration error.
    """
    from modelserve.host import load_version
    from modelserve.selftest import CaseResult, SelfTestReport, Tolerance, write_junit

    settings = obj.settings()
    unknown = [name for name in names if name not in settings.models]
    if unknown:
        known = ", ".join(sorted(settings.models)) or "(none)"
        raise ConfigError(f"not in modelserve.toml: {', '.join(unknown)}; models: {known}")
    selected = names or tuple(settings.models)
    if not selected:
        raise ConfigError("modelserve.toml lists no models to self-test")
    registry = obj.registry()
    rows: list[tuple[Any, ...]] = []
    reports: list[SelfTestReport] = []
    failed = False
    for name in selected:
        config = settings.models[name]
        try:
            resident = load_version(registry, name, config)
            report = resident.report
            verdict = "warn" if resident.warning else "pass"
        except ModelserveError as exc:
            failed_report = getattr(exc, "report", None)
            if not isinstance(failed_report, SelfTestReport):
                rows.append((name, config.reference, "", "error", str(exc)))
                failed = True
                load_case = CaseResult(name="load", input=None, expected=None, error=str(exc))
                reports.append(SelfTestReport(name, None, [load_case], Tolerance()))
                continue
            report = failed_report
            verdict = "fail"
        failed = failed or not report.passed
        reports.append(report)
        passed = sum(1 for case in report.cases if case.passed)
        rows.append(
            (
                name,
                config.reference,
                report.version,
                verdict,
                f"{passed}/{len(report.cases)} cases passed",
            )
        )
    print_table("self-test", ("model", "serves", "version", "result", "details"), rows)
    for report in reports:
        if not report.passed:
            print_report(report)
    if junit is not None:
        write_junit(reports, junit)
        console().print(f"JUnit XML written to {junit}")
    if failed:
        raise SystemExit(1)


def register(group: click.Group) -> None:
    group.add_command(selftest)
