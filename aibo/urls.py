from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from accounts.views import admin_login
from aibo import health
from aibo.api import api

admin.site.site_header = "aibo operations"
admin.site.site_title = "aibo admin"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/login/", admin_login),  # throttled like the site's login, before the admin's own
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("", include("bots.urls")),
    path("", include("ai_advisor.urls")),
    path("api/", api.urls),
]
