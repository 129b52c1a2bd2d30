"""Infrastructure apart from the domain (issue #28 item 6): settings from the environment, the database
engine and SQLite's write gate, dialect helpers, the inbox and outbox stores, and the blob store. It knows
nothing of Telegram, the review operation or its people: services use it, it uses no service."""
