"""Signals the market sends; other apps listen (arrows go one way: bots → market)."""

from __future__ import annotations

from django.dispatch import Signal

# Sent after the feed stored closed candles for one market, with exchange, symbol, the lowest
# low and highest high of the batch, and the market time of its last candle. Bots wake on it.
candles_closed = Signal()
