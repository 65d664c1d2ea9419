"""`python -m autoresearch` is the same as the `autoresearch` command."""

from autoresearch.cli import main

main()
