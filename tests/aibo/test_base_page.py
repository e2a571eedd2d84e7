"""The frame of every page (templates/base.html): the main menu, which marks the page it is on."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def current(html: str) -> list[str]:
    return re.findall(r'aria-current="page">([^<]+)</a>', html)


def test_the_menu_folds_its_links_into_a_details_with_a_menu_button(client, user):
    client.force_login(user)
    html = client.get(reverse("bots:dashboard")).text
    menu = re.search(r'<details class="nav-menu" id="nav-menu">(.*?)</details>', html, re.S)
    assert menu, "no menu"
    assert re.search(r"<summary>.*Menu</summary>", menu.group(1))
    for name in ("Dashboard", "New bot", "Backtest", "Exchange keys", "Password", "Log out"):
        assert f">{name}</" in menu.group(1), name
    assert user.email in menu.group(1)


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("bots:dashboard", "Dashboard"),
        ("bots:new", "New bot"),
        ("bots:backtest_new", "Backtest"),
        ("accounts:credentials", "Exchange keys"),
        ("accounts:password_change", "Password"),
        ("accounts:two_factor", "Two-factor"),
    ],
)
def test_the_menu_marks_the_page_it_is_on(client, user, url, name):
    client.force_login(user)
    assert current(client.get(reverse(url)).text) == [name]


def test_signed_out_pages_show_log_in_and_register_without_a_menu(client):
    html = client.get(reverse("accounts:register")).text
    assert "nav-menu" not in html
    assert current(html) == ["Register"]
    assert ">Log in</a>" in html
