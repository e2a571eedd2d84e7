"""At phone size (390×844) every page a trader uses fits the screen: nothing scrolls sideways,
the nav folds into a menu, and the wide tables scroll inside their own box. At 1440 px the bot
page's ladder shows all its columns. Plus the polish every page shares: a favicon, and no 404
in the browser's network log."""

from __future__ import annotations

import re
from decimal import Decimal as D
from typing import Any

import pytest

from accounts.models import ExchangeCredential
from bots import services
from bots.models import Bot
from market.models import MarketRules
from tests.browser.conftest import log_in, screenshot
from tests.browser.test_desk import in_thread, market

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
NAV_MAX_HEIGHT = 60
GRID = {
    "capital": "1000",
    "lower_bound": "60000",
    "upper_bound": "70000",
    "grid_levels": "12",
    "spacing": "geometric",
    "stop_loss_pct": "5",
    "max_daily_loss": "0",
    "take_profit": "",
}
FINE_GRID = {**GRID, "spacing": "arithmetic"}

# Every laid-out element whose right edge lies beyond the viewport, unless a box that holds it
# clips or scrolls it (a table wrapper with overflow-x: auto). An absolutely positioned element
# (a visually hidden label) is held by its positioned ancestor, not by the boxes in between.
OVERFLOW = """() => {
  const width = window.innerWidth;
  const contained = (el) => {
    const position = getComputedStyle(el).position;
    if (position === "fixed") return false;
    let p = position === "absolute" ? el.offsetParent : el.parentElement;
    for (; p && p !== document.body; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== "visible") return true;
    }
    return false;
  };
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (el.classList.length ? "." + [...el.classList].join(".") : "");
  const beyond = [];
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || box.right <= width + 0.5) continue;
    if (!contained(el)) beyond.push(`${name(el)} ends at ${Math.round(box.right)}px`);
  }
  return {scrollWidth: document.documentElement.scrollWidth, width, beyond};
}"""


def assert_fits(page: Any, what: str) -> None:
    found = page.evaluate(OVERFLOW)
    assert found["scrollWidth"] <= found["width"], (
        f"{what} scrolls sideways: {found['scrollWidth']}px wide in {found['width']}px; "
        f"{found['beyond'][:8]}"
    )
    assert not found["beyond"], f"{what}: elements beyond the screen's edge: {found['beyond'][:8]}"


def assert_nav_folded(page: Any) -> None:
    header = page.locator("header.topbar").bounding_box()
    assert header["height"] <= NAV_MAX_HEIGHT, f"the nav is {header['height']}px tall"
    assert not page.get_by_role("link", name="Exchange keys").is_visible()


@pytest.fixture
def trader(live_url: str, django_user_model: Any) -> Any:
    """A trader with a running paper bot on BTC/USDT and a set of exchange keys."""
    market()
    user = django_user_model.objects.create_user(
        email="a-rather-long-address.for-a-phone@example.com", password="a-Long-pw-123"
    )
    bot = services.create_bot(
        user,
        symbol="BTC/USDT",
        name="Phone grid with a long name",
        config=GRID,
    )
    in_thread(lambda: services.start_bot(bot))  # its push needs a thread without a loop
    cred = ExchangeCredential(owner=user, label="Main account on Binance", testnet=True)
    cred.set_keys("phone-key-Zx81Qw00LmN4", "phone-secret-Pq72Rt55VbC9")
    cred.save()
    user.bot = Bot.objects.get(pk=bot.pk)
    return user


def on_a_phone(page: Any, live_url: str, trader: Any) -> None:
    page.set_viewport_size(PHONE)
    log_in(page, live_url, trader.email)


def test_the_dashboard_with_a_bot_fits_a_phone_and_folds_the_nav(page, live_url, trader):
    on_a_phone(page, live_url, trader)
    page.locator(f"#bot-{trader.bot.pk}-card").wait_for()
    assert_nav_folded(page)
    assert_fits(page, "the dashboard")
    screenshot(page, "phone-dashboard")


def test_the_new_bot_form_fits_a_phone(page, live_url, trader):
    on_a_phone(page, live_url, trader)
    page.goto(f"{live_url}/bots/new/")
    page.locator("#bot-form").wait_for()
    assert_nav_folded(page)
    assert_fits(page, "the new-bot form")
    screenshot(page, "phone-new-bot")


def test_the_bot_page_fits_a_phone(page, live_url, trader):
    on_a_phone(page, live_url, trader)
    page.goto(f"{live_url}/bots/{trader.bot.pk}/")
    page.locator("#bot-chart canvas").first.wait_for()
    page.locator(f"#bot-{trader.bot.pk}-ladder table").wait_for()
    page.wait_for_function("() => Number(document.querySelector('#bot-chart').dataset.candles) > 0")
    assert_nav_folded(page)
    assert_fits(page, "the bot page")
    # What a trader looks for first, the bot's status and its Stop button, is at the top. Read
    # in one go in the page: the status card is swapped by live pushes, and a box asked for
    # while one lands is none.
    stop = (
        page.locator(f"#bot-{trader.bot.pk}-status")
        .locator("a, button")
        .filter(has_text=re.compile(r"^\s*Stop\b"))
    )
    stop.first.wait_for()
    status, chart, stop_y = page.evaluate(
        """([card]) => {
            const top = (el) => el.getBoundingClientRect().top + window.scrollY;
            const stop = [...document.querySelectorAll(`${card} a, ${card} button`)]
                .find((el) => /^\\s*Stop\\b/.test(el.textContent));
            return [top(document.querySelector(card)),
                    top(document.querySelector("#bot-chart")), top(stop)];
        }""",
        [f"#bot-{trader.bot.pk}-status"],
    )
    assert status < chart, (status, chart)
    assert stop_y < PHONE["height"], "Stop is not on the first screen"
    screenshot(page, "phone-bot-page")


def test_the_keys_page_fits_a_phone(page, live_url, trader):
    on_a_phone(page, live_url, trader)
    page.goto(f"{live_url}/accounts/keys/")
    page.get_by_text("••••LmN4").wait_for()
    assert_nav_folded(page)
    assert_fits(page, "the keys page")
    # Each key's every column in sight, its buttons included, without scrolling a table.
    row = page.locator("#credential-table tbody tr").first
    parts = {
        "verified": row.locator("td", has_text="not verified"),
        "Verify again": row.get_by_role("button", name="Verify again"),
        "Delete": row.get_by_role("button", name="Delete"),
    }
    for name, part in parts.items():
        box = part.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (name, box)
    screenshot(page, "phone-keys")


def test_the_phone_menu_opens_and_closes_with_the_keyboard(page, live_url, trader):
    on_a_phone(page, live_url, trader)
    menu = page.locator(".nav-menu summary")
    keys = page.get_by_role("link", name="Exchange keys")
    assert menu.is_visible() and not keys.is_visible()

    menu.focus()
    page.keyboard.press("Enter")
    keys.wait_for()
    assert page.get_by_text(trader.email).is_visible()
    assert_fits(page, "the dashboard with the menu open")
    screenshot(page, "phone-menu-open")
    page.keyboard.press("Escape")  # closes it, and the focus goes back to the button
    keys.wait_for(state="hidden")
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"

    # A tap outside the open menu closes it too.
    menu.click()
    keys.wait_for()
    page.mouse.click(4, PHONE["height"] - 20)  # the page's margin, below the open menu
    keys.wait_for(state="hidden")

    menu.focus()
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # Dashboard, then New bot
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_url}/bots/new/")


def test_the_nav_shows_every_link_on_a_wide_screen_without_a_menu_button(page, live_url, trader):
    log_in(page, live_url, trader.email)
    assert not page.locator(".nav-menu summary").is_visible()
    nav = page.get_by_role("navigation", name="Main")
    for name in ("Dashboard", "New bot", "Backtest", "Exchange keys", "Password", "Two-factor"):
        assert nav.get_by_role("link", name=name, exact=True).is_visible(), name
    assert nav.get_by_role("button", name="Log out").is_visible()
    header = page.locator("header.topbar").bounding_box()
    assert header["height"] <= NAV_MAX_HEIGHT, f"the nav is {header['height']}px tall"


def test_the_ladder_shows_its_last_column_at_1440_px(page, live_url, trader):
    # A pair traded to the satoshi: amounts of eight decimals make the ladder's widest rows.
    MarketRules.objects.filter(symbol="BTC/USDT").update(step=D("0.00000001"))
    bot = services.create_bot(trader, symbol="BTC/USDT", name="Fine grid", config=FINE_GRID)
    in_thread(lambda: services.start_bot(bot))
    page.set_viewport_size({"width": 1440, "height": 900})
    log_in(page, live_url, trader.email)
    page.goto(f"{live_url}/bots/{bot.pk}/")
    ladder = page.locator(f"#bot-{bot.pk}-ladder")
    table = ladder.locator("table")
    table.wait_for()
    page.locator(".live-indicator[data-live-state='live']").wait_for()  # the page's first push
    assert re.search(r"\d\.\d{8} @", ladder.inner_text()), ladder.inner_text()
    # Measured in one go: a push may swap the ladder in between two separate reads.
    edges = page.evaluate(
        """id => {
            const t = document.querySelector(`#${id} table`);
            const th = t.querySelectorAll('thead th');
            return {table: t.getBoundingClientRect().right,
                    box: t.parentElement.getBoundingClientRect().right,
                    card: t.closest('section').getBoundingClientRect().right,
                    last: th[th.length - 1].getBoundingClientRect().right,
                    scroll: t.parentElement.scrollWidth, client: t.parentElement.clientWidth};
        }""",
        f"bot-{bot.pk}-ladder",
    )
    assert edges["table"] <= edges["box"] + 0.5, edges
    assert edges["scroll"] <= edges["client"], f"the ladder scrolls to show its columns: {edges}"
    assert edges["last"] <= edges["card"], edges
    screenshot(page, "wide-bot-page-ladder")


def test_no_page_asks_for_a_file_that_is_not_there(page, live_url, trader):
    missing: list[str] = []
    logged: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    page.on("console", lambda m: logged.append(m.text) if m.type == "error" else None)
    log_in(page, live_url, trader.email)
    page.locator(f"#bot-{trader.bot.pk}-card").wait_for()
    page.wait_for_load_state("networkidle")
    assert not missing, missing
    # Nor the bot page (its chart library, its socket), and nothing in the console there.
    page.goto(f"{live_url}/bots/{trader.bot.pk}/")
    page.locator("#bot-chart canvas").first.wait_for()
    page.wait_for_load_state("networkidle")
    assert not missing and not logged, (missing, logged)
    icon = page.locator("link[rel=icon]").first.get_attribute("href")
    assert page.request.get(f"{live_url}{icon}").ok
    # Pages that name no icon (the admin, the error pages): the browser asks for /favicon.ico.
    favicon = page.request.get(f"{live_url}/favicon.ico")
    assert favicon.ok and favicon.headers["content-type"].startswith("image/"), favicon.headers


def test_no_page_logs_an_error_for_a_trader_without_keys(page, live_url, django_user_model):
    # htmx says in the console when a swap finds no target (htmx:oobErrorNoTarget: the new-bot
    # form's preview for a trader without exchange keys did); the browser, when a file fails.
    market()
    user = django_user_model.objects.create_user(email="new@example.com", password="a-Long-pw-123")
    logged: list[str] = []
    page.on(
        "console",
        lambda m: logged.append(f"{m.text} on {page.url}") if m.type == "error" else None,
    )
    log_in(page, live_url, user.email)
    for path in ("/", "/bots/new/", "/backtests/new/", "/accounts/keys/", "/accounts/password/"):
        page.goto(f"{live_url}{path}")
        page.wait_for_load_state("networkidle")
    page.goto(f"{live_url}/bots/new/")
    form = page.locator("#bot-form")
    form.get_by_label("Name", exact=True).fill("First grid")
    form.get_by_label("Capital", exact=True).fill("1000")
    form.get_by_label("Lower price", exact=True).fill("60000")
    form.get_by_label("Upper price", exact=True).fill("70000")
    form.get_by_label("Price lines").fill("20")
    page.get_by_test_id("preview-lines").filter(has_text="20 from 60,000.00").wait_for()
    page.wait_for_load_state("networkidle")
    assert not logged, logged


def test_the_bar_stays_one_line_at_every_width(page, live_url, trader):
    # The longest bar: an operator (the Admin link) with a long address.
    type(trader).objects.filter(pk=trader.pk).update(is_staff=True)
    log_in(page, live_url, trader.email)
    for width in (320, 390, 768, 1024, 1100, 1101, 1280, 1440):
        page.set_viewport_size({"width": width, "height": 900})
        header = page.locator("header.topbar").bounding_box()
        assert header["height"] <= NAV_MAX_HEIGHT, f"the bar is {header['height']}px at {width}px"
        assert page.evaluate("document.documentElement.scrollWidth") <= width, width
        folded = page.locator(".nav-menu summary").is_visible()
        assert folded == (width <= 1100), f"menu button shown: {folded} at {width}px"
        assert page.get_by_role("link", name="Admin").is_visible() == (not folded), width


def test_the_phone_menu_works_without_javascript(browser, live_url, trader):
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    try:
        page = context.new_page()
        log_in(page, live_url, trader.email)
        assert_nav_folded(page)
        page.locator(".nav-menu summary").click()
        page.get_by_role("link", name="Exchange keys").click()
        page.wait_for_url(f"{live_url}/accounts/keys/")
        # And on a wide screen the links are in the bar, no button.
        page.set_viewport_size({"width": 1280, "height": 900})
        assert not page.locator(".nav-menu summary").is_visible()
        assert page.get_by_role("link", name="Dashboard").is_visible()
    finally:
        context.close()
