"""Issue 16: the operator's page: who may act, and what the budget rows say."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from aibo import operations
from market.exchange import Budget, Limit

pytestmark = pytest.mark.django_db


def test_only_staff_see_it_and_only_those_who_may_change_bots_act(django_user_model: Any) -> None:
    assert Client().get("/admin/operations/").status_code == 302  # to the admin's login
    staff = django_user_model.objects.create_user(
        email="staff@example.com", password="x", is_staff=True
    )
    client = Client()
    client.force_login(staff)
    page = client.get("/admin/operations/")
    assert page.status_code == 200 and "Stop this bot" not in page.text
    assert client.post("/admin/operations/", {"stop_user": str(staff.pk)}).status_code == 403


def test_the_budget_row_says_what_is_used_and_left_of_each_limit(db: None) -> None:
    from django.core.cache import cache

    budget = Budget("binance")
    limits = [Limit("REQUEST_WEIGHT", 60, 6000), Limit("ORDERS", 10, 100)]
    cache.set(budget._key("limits"), limits)
    budget.after(200, "https://api.binance.com/api/v3/ticker", {"X-MBX-USED-WEIGHT-1M": "1234"}, "")
    row = operations.BudgetRow("binance (this server's IP)", budget.usage())
    # the IP's weight only: orders are counted per account (a budget with a key)
    assert row.limits == [
        {"what": "request weight (this IP) per 60 s", "used": 1234, "limit": 6000, "left": 4766}
    ]
