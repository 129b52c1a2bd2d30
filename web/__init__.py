"""The web console for managers (issue #26): aiohttp, server-rendered pages, a Telegram Mini App too.

`web.app.create_console_app` builds the application; `fieldcheck web` serves it alone, and it mounts
beside a webhook under the same `/console` prefix. Queries live in services/console.py; this package only
checks who is asking and renders what the service returns.
"""
