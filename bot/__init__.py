"""Application package: configuration, factories (bot, dispatcher, scheduler), entry points, sandbox."""
