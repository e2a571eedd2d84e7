"""The bots layer's errors: one root, and what a caller may need to tell apart.

The grid (``bots.grid.engine.GridError``) and the exchange (``market.exchange.ExchangeError``)
have their own; they are translated into these once, where the bots layer calls them, so
views, commands and tasks catch ``BotError`` alone.
"""

from __future__ import annotations


class BotError(Exception):
    """Why an action on a bot cannot be done, in words for its owner; nothing was changed."""

    def sentence(self) -> str:
        """The message as a sentence: a capital first letter and a full stop."""
        text = str(self)
        return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


class ConfigError(BotError):
    """A bot config that cannot run; ``field`` names the config key to change (None: the
    config as a whole)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class LiveError(BotError):
    """A live action could not be done on the exchange; the message says why, in words."""


class Throttled(BotError):
    """Too much at once or in the hour; ``retry_after`` seconds until it is allowed again."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
