"""Application package: factories (bot, dispatcher, scheduler), the runtime, entry points and the CLI."""
