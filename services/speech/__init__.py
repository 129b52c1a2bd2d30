"""Speech analysis: what was said, by whom, whether the promoter's script was followed, and a verdict.

No aiogram here (tests/test_layers.py): the voice worker and the command line call it."""
