"""``python -m videoxai`` — the same command line as the ``videoxai`` script."""

from .cli import main

main()
