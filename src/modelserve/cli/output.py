"""Rich tables for the CLI: registry listings and self-test reports."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["console", "print_report", "print_table"]


def console(err: bool = False) -> Console:
    return Console(stderr=err, soft_wrap=True)


def print_table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console().print(table)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_report(report: Any, err: bool = False) -> None:
    """One row per failing case: where outputs first differ, expected, actual, tolerance."""
    table = Table(title=report.summary(), title_justify="left")
    for column in ("case", "check", "path", "expected", "actual", "reason"):
        table.add_column(column)
    for case in report.cases:
        if case.passed:
            continue
        if case.error is not None:
            table.add_row(case.name, "predict", "", "", "", _short(case.error, 100))
        for check, diff in (("expected", case.expected_diff), ("golden", case.golden_diff)):
            if diff is not None:
                table.add_row(
                    case.name,
                    check,
                    diff.path,
                    _short(diff.expected),
                    _short(diff.actual),
                    diff.reason,
                )
    if table.row_count:
        console(err).print(table)
