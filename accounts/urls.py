from __future__ import annotations

from django.urls import path

from accounts import two_factor_views, views

app_name = "accounts"
urlpatterns = [
    path("register/", views.register, name="register"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("login/code/", two_factor_views.login_code, name="login_code"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("password/", views.PasswordChangeView.as_view(), name="password_change"),
    path("password/reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("password/reset/sent/", views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password/reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/done/",
        views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("two-factor/", two_factor_views.setup, name="two_factor"),
    path("two-factor/recovery-codes/", two_factor_views.new_codes, name="two_factor_codes"),
    path("two-factor/off/", two_factor_views.turn_off, name="two_factor_off"),
    path("keys/", views.credential_list, name="credentials"),
    path("keys/<int:pk>/verify/", views.credential_verify, name="credential_verify"),
    path("keys/<int:pk>/delete/", views.credential_delete, name="credential_delete"),
]
