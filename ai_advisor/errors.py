"""The advisor's errors, in words for the user (views show them as they are)."""

from __future__ import annotations


class AdviceError(Exception):
    """Bad input for the advisor, or the market cannot be advised on; in words for the user."""


class Throttled(AdviceError):
    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DecisionError(AdviceError):
    """The decision cannot be carried out; nothing about the bot changed."""


class NeedsConfirmation(DecisionError):
    """The bot is running: accepting restarts it, which the user must confirm."""
