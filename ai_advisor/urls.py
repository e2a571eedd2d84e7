from __future__ import annotations

from django.urls import path

from ai_advisor import views

app_name = "ai_advisor"
urlpatterns = [
    path("ai/runs/", views.run_create, name="run_create"),
    path("ai/runs/<int:pk>/", views.run_detail, name="run"),
    path("ai/runs/<int:pk>/accept/", views.run_accept, name="accept"),
    path("ai/runs/<int:pk>/reject/", views.run_reject, name="reject"),
]
