"""``python -m modelserve`` runs the CLI."""

from modelserve.cli import main

main()
