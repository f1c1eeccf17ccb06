"""The modules setup.py compiles with mypyc, read from setup.py's ``COMPILED`` list."""

from __future__ import annotations

import ast
from pathlib import Path


def compiled_modules() -> list[str]:
    """Module names, e.g. ``modelserve.server.routes``."""
    tree = ast.parse((Path(__file__).parents[1] / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "COMPILED":
            paths: list[str] = ast.literal_eval(node.value)
            return [p.removeprefix("src/").removesuffix(".py").replace("/", ".") for p in paths]
    raise LookupError("setup.py has no COMPILED list")
