"""The Telegram cockpit (python-telegram-bot v22, embedded in the engine's event loop)."""

import os

# Opt in to PTB's timedelta ``retry_after`` now (the outbox handles both forms), so the deprecation never fires.
os.environ.setdefault("PTB_TIMEDELTA", "1")
