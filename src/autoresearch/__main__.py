"""`python -m autoresearch` is the same as the `autoresearch` command."""

from autoresearch.entry import main

main()
