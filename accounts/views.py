from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_http_methods

from accounts import throttle
from accounts.forms import EmailLoginForm, RegistrationForm


@require_http_methods(["GET", "POST"])
def register(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("bots:dashboard")
    form = RegistrationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, "Welcome to aibo. Your account is ready.")
        return redirect("bots:dashboard")
    return render(request, "accounts/register.html", {"form": form})


class LoginView(auth_views.LoginView):
    """Django's login, throttled: repeated failures for one email or IP get HTTP 429."""

    template_name = "accounts/login.html"
    authentication_form = EmailLoginForm
    redirect_authenticated_user = True

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        email = request.POST.get("username", "")
        ip = throttle.client_ip(request.META)
        if throttle.is_locked_out(email, ip):
            form = self.get_form()
            return render(
                request,
                self.template_name,
                {
                    "form": form,
                    "throttled": True,
                    "throttle_message": "Too many failed sign-in attempts. "
                    "Wait 15 minutes and try again, or reset your password.",
                },
                status=429,
            )
        response = super().post(request, *args, **kwargs)
        if request.user.is_authenticated:
            throttle.clear_failures(email, ip)
        else:
            throttle.record_failure(email, ip)
        return response


class LogoutView(auth_views.LogoutView):
    pass


class PasswordChangeView(auth_views.PasswordChangeView):
    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("bots:dashboard")

    def form_valid(self, form: Any) -> HttpResponse:
        messages.success(self.request, "Your password has been changed.")
        return super().form_valid(form)
