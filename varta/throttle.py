"""Rate-limited logging of repeated failures: a siren polled every 50 ms, a UPS or an alert feed failing on every
poll must not fill the log (edge and central use it)."""

from __future__ import annotations

from typing import Final

DEFAULT_EVERY_S: Final = 60.0


class LogThrottle:
    """Says when a repeated message may be logged: the first time a key is seen, then at most once per ``every_s``.

    :meth:`allow` returns how many occurrences were held back since the last line (to log with it), or None when
    this one must be held back too.
    """

    def __init__(self, every_s: float = DEFAULT_EVERY_S) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def allow(self, key: str, now: float) -> int | None:
        """Whether to log *key* at *now* (monotonic seconds): the number held back since, or None."""
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now
        return self._held.pop(key, 0)

    def reset(self) -> None:
        """Forget every key (the failures stopped): the next one is logged at once."""
        self._last.clear()
        self._held.clear()
