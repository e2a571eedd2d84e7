"""Editing a running grid (issue 17): the page, the change as a plan of orders as the fields
change (htmx), and applying it as shown.

The plan shown and the plan applied are made by one function (``bots.regrid.plan``); the page
carries the shown plan's digest and price back, and an apply whose plan no longer matches
(a fill, the price crossing a line or moving too far) shows the new plan instead of doing it.
A live bot's apply asks for its pair typed in a dialog, as a live start does.

Every query is scoped to ``request.user``: another user's bot is a 404.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from accounts.http import AuthedRequest
from aibo.limits import per_client
from bots import config as schema
from bots import regrid, services
from bots.errors import BotError
from bots.forms import BotForm
from bots.models import Bot
from bots.views import own_bot

# What a running bot's edit keeps as it is: its pair, mode, keys and name.
KEPT = ("symbol", "mode", "credential", "name")
PREFILL_CHARS = 80  # the longest value a link may fill in (``?upper_bound=…``)


class EditGridForm(BotForm):
    """The grid and risk fields of a running ``bot``, checked as the bot form checks them
    (the market's rules, the loss consent); the pair, mode, keys and name stay the bot's."""

    def __init__(self, data: QueryDict | None = None, *, bot: Bot) -> None:
        if data is not None:
            data = data.copy()
            data["symbol"], data["mode"], data["name"] = bot.symbol, bot.mode, bot.name
            data["credential"] = str(bot.credential_id or "")
        super().__init__(data, initial=BotForm.initial_for(bot), owner=bot.owner)
        self.bot = bot
        # The extensions are not changed here: left out of config(), the running ones are kept.
        for name in schema.EXTENSION_KEYS:
            self.fields.pop(name, None)

    @property
    def edited(self) -> list[str]:
        """The fields the page shows."""
        return [name for name in self.shown(editing=True) if name not in KEPT]


def _plan_for(form: EditGridForm) -> tuple[regrid.Plan | None, str]:
    """The plan of a valid form, or why there is none, in words."""
    if not form.is_valid():
        return None, "Fix the fields marked above: nothing would change yet."
    try:
        return services.plan_grid_edit(form.bot, form.config()), ""
    except BotError as e:
        field = getattr(e, "field", None)
        if field in form.fields:
            form.add_error(field, e.sentence())
            return None, "Fix the fields marked above: nothing would change yet."
        return None, e.sentence()


def _shown(request: AuthedRequest) -> regrid.Shown:
    try:
        price = Decimal(request.POST.get("plan_price", "0")[:40])
    except InvalidOperation:
        price = Decimal(0)
    if not price.is_finite() or price < 0:
        price = Decimal(0)
    return regrid.Shown(request.POST.get("plan", "")[:40], price)


def _page(
    request: AuthedRequest, bot: Bot, form: EditGridForm, *, plan: regrid.Plan | None,
    problem: str = "", refusal: str = "", confirm: regrid.ConfirmationNeeded | None = None,
    status: int = 200,
) -> HttpResponse:  # fmt: skip
    ctx = {"bot": bot, "form": form, "plan": plan, "problem": problem, "refusal": refusal,
           "confirm": confirm, "values": _values(form)}  # fmt: skip
    return render(request, "bots/edit_grid.html", ctx, status=status)


def _values(form: EditGridForm) -> list[tuple[str, str]]:
    """The fields as typed (the live confirmation's form posts them again)."""
    if not form.is_bound:
        return []
    names = [*form.edited, "accept_loss"]
    return [(name, str(form.data.get(name, ""))) for name in names if name in form.data]


@login_required
@require_http_methods(["GET", "POST"])
def bot_edit_grid(request: AuthedRequest, pk: int) -> HttpResponse:
    """GET: the running bot's grid and risk fields, with the change they make (none yet; a
    link's ``?lower_bound=…&capital=…`` fills them in and shows its change). POST: apply the
    change shown; a live bot's with its pair typed. A stopped bot is edited on the ordinary
    edit page."""
    bot = own_bot(request, pk)
    if not bot.is_running:
        return redirect("bots:edit", pk=bot.pk)
    if request.method == "GET":
        asked = {k: v[:PREFILL_CHARS] for k, v in request.GET.items() if k in schema.KEYS}
        if asked:  # a link's new values (the advisor's suggestion): their change is shown
            data = QueryDict(mutable=True)
            data.update({**bot.config, **asked})
            form = EditGridForm(data, bot=bot)
            plan, problem = _plan_for(form)
            return _page(request, bot, form, plan=plan, problem=problem)
        form = EditGridForm(bot=bot)
        plan, problem = None, ""
        try:
            plan = services.plan_grid_edit(bot, {})
        except BotError as e:
            problem = e.sentence()
        return _page(request, bot, form, plan=plan, problem=problem)

    form = EditGridForm(request.POST, bot=bot)
    plan, problem = _plan_for(form)
    if plan is None:
        return _page(request, bot, form, plan=None, problem=problem, status=422)
    if not plan.changed:
        return _page(request, bot, form, plan=plan, refusal="This is the grid running now: "
                     "change a field first. Nothing was changed.", status=422)  # fmt: skip
    typed = request.POST.get("confirm_pair")
    try:
        done = services.apply_grid_edit(bot, form.config(), shown=_shown(request), typed_pair=typed)
    except regrid.ConfirmationNeeded as e:
        return _page(request, bot, form, plan=e.plan, confirm=e)
    except regrid.PlanChanged as e:
        return _page(request, bot, form, plan=e.plan, refusal=e.sentence(), status=409)
    except BotError as e:
        return _page(request, bot, form, plan=plan, refusal=e.sentence(), status=409)
    messages.success(request, f"{bot}: {done.headline()}")
    if request.htmx:
        return HttpResponseClientRedirect(reverse("bots:detail", args=[bot.pk]))
    return redirect("bots:detail", pk=bot.pk)


@login_required
@require_POST
@per_client("preview", limit_setting="PREVIEWS_PER_CLIENT_PER_MINUTE", window=60)
def bot_edit_grid_preview(request: AuthedRequest, pk: int) -> HttpResponse:
    """The change the fields as typed make to the running grid (the page's ``diff`` part),
    with each field's errors out of band."""
    bot = own_bot(request, pk)
    form = EditGridForm(request.POST, bot=bot)
    plan, problem = (None, f"{bot} is not running.") if not bot.is_running else _plan_for(form)
    response = render(
        request, "bots/edit_grid.html#diff", {"bot": bot, "form": form, "plan": plan,
                                              "problem": problem},
    )  # fmt: skip
    for name in form.edited:
        errors = form.errors.get(name, []) if request.POST.get(name, "").strip() else []
        response.write(
            render_to_string(
                "bots/edit_grid.html#field-errors",
                {"field_id": form[name].auto_id, "errors": errors},
            )
        )
    return response
