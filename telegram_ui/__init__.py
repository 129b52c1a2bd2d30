"""The Telegram adapter: callback data, keyboards and presenters that turn domain objects into message
texts and markups, and the outbox notifications built from them.

Handlers (who answer people) and jobs (who write to them unasked) both depend on this package; it depends
on neither, so a job never imports a handler (tests/test_layers.py keeps it so).
"""
