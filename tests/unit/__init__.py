"""The fast tier: pure rules (review marks, form progress, routing, script checks), no database, bot or
audio. `pytest tests/unit` runs in seconds; the rest of tests/ drives the real bot."""
