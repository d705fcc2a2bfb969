"""``python -m kldiv.cli``: the same as the ``kldiv`` command."""

from kldiv.cli import main

main()
