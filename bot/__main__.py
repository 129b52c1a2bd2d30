"""`python -m bot` is `fieldcheck` (default command: run)."""

from bot.cli import main

main()
