"""The money column: a DecimalField that reads back whatever its column holds."""

from __future__ import annotations

import decimal
from typing import Any

from django.db import models
from django.utils.functional import cached_property


class MoneyField(models.DecimalField):
    """SQLite keeps a number that does not fit ``max_digits`` as a float, and Django's reader
    then refuses it (it quantizes under a ``max_digits`` context): one such row, written by an
    older release or by hand, breaks every query that touches it, a list page and the
    emergency stop included. Reading with room for any float keeps the row readable, so it can
    be shown, stopped and fixed; the config schema (``bots.config``) keeps new ones out.

    The column is a plain ``DecimalField``'s (``deconstruct`` says so: no migration)."""

    @cached_property
    def context(self) -> decimal.Context:
        return decimal.Context(prec=self.max_digits + 330)  # 330 > any double's exponent

    def deconstruct(self) -> Any:
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.DecimalField", args, kwargs
