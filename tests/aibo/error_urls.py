"""The app's URLs and one view that fails, for the error page and error logging tests."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path

SECRET_DETAIL = "database password is hunter2"


def boom(request: HttpRequest) -> HttpResponse:
    owner_email = request.user.email if request.user.is_authenticated else ""
    raise RuntimeError(f"{SECRET_DETAIL} for {owner_email}")


urlpatterns = [path("boom/", boom), path("", include("aibo.urls"))]
