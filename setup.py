"""Build: the modules every request runs through are compiled with mypyc.

The ``.py`` files stay the one source: mypyc compiles them to C extension modules that
Python imports in their place. ``MODELSERVE_COMPILE=0`` installs them as plain Python (no C
compiler needed; about 50 % more instructions per request on a light model, see
docs/performance.md).
Everything else about the package is in pyproject.toml.
"""

import os

from setuptools import setup

# The request path: the HTTP protocol, the routes, the data plane, the resident models and
# their counters, the access log. mypyc needs their annotations to be right (mypy --strict).
COMPILED = [
    "src/modelserve/server/protocol.py",
    "src/modelserve/server/routes.py",
    "src/modelserve/dataplane/core.py",
    "src/modelserve/host.py",
    "src/modelserve/metrics.py",
    "src/modelserve/logs.py",
]


def ext_modules() -> list:
    if os.environ.get("MODELSERVE_COMPILE", "1") == "0":
        return []
    from mypyc.build import mypycify

    # The build environment holds setuptools and mypy only: the dependencies' types are
    # missing there, so pyproject's strict [tool.mypy] (for scripts/lint) does not apply,
    # and a cache of its own keeps the lint's cache (with those types) out of the build.
    options = ["--config-file=", "--ignore-missing-imports", "--cache-dir=build/mypyc-cache"]
    return mypycify([*options, *COMPILED], opt_level="3", group_name="modelserve")


setup(ext_modules=ext_modules())
