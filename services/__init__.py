"""Domain logic that is not Telegram-specific: handlers, jobs and the CLI call into these modules."""
