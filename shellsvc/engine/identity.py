"""Who the code running in this context acts for.

The engine sets it in each session's worker thread (and so in everything that inherits
the worker's context: threads it starts, coroutines it awaits on the app loop). Other
concerns read it to attribute what they record - the patch journal names the SSH user
rather than the server's OS user.
"""

from __future__ import annotations

import contextvars

__all__ = ["current_user"]

#: The shellsvc user on whose behalf code runs here; ``None`` outside any session.
current_user: contextvars.ContextVar[str | None] = contextvars.ContextVar("shellsvc_user", default=None)
