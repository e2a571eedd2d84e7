from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.decorators.cache import cache_control

from accounts.views import admin_login
from aibo import metrics, operations
from aibo.api import api

admin.site.site_header = "aibo operations"
admin.site.site_title = "aibo admin"


# Browsers ask for /favicon.ico on pages that do not name an icon (the admin, the error pages,
# a bare file): send them to the hashed file, itself cached for a year. Not permanent, so a new
# icon is picked up within a day.
@cache_control(max_age=86400, public=True)
def favicon(request: HttpRequest) -> HttpResponseRedirect:
    return HttpResponseRedirect(static("favicon.ico"))


urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/login/", admin_login),  # throttled like the site's login, before the admin's own
    path(
        "admin/operations/",
        admin.site.admin_view(operations.operations_view),
        name="admin_operations",
    ),
    path("admin/", admin.site.urls),
    path("accounts/", include("accounts.urls")),
    path("notifications/", include("notifications.urls")),
    path("", include("bots.urls")),
    path("", include("ai_advisor.urls")),
    path("api/", api.urls),
]
