from __future__ import annotations

from django.urls import path

from bots import edit_views, form_views, views

app_name = "bots"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("bots/emergency-stop/", views.emergency_stop, name="emergency_stop"),
    path("bots/new/", form_views.bot_new, name="new"),
    path("bots/preview/", form_views.bot_preview, name="preview"),
    path("pairs/", form_views.pair_search, name="pairs"),
    path("pairs/history/", form_views.pair_history, name="pair_history"),
    path("pairs/candles.json", form_views.pair_candles, name="pair_candles"),
    path("bots/<int:pk>/", views.bot_detail, name="detail"),
    path("bots/<int:pk>/edit/", form_views.bot_edit, name="edit"),
    path("bots/<int:pk>/grid/", edit_views.bot_edit_grid, name="edit_grid"),
    path("bots/<int:pk>/grid/preview/", edit_views.bot_edit_grid_preview, name="edit_grid_preview"),
    path("bots/<int:pk>/start/", views.bot_start, name="start"),
    path("bots/<int:pk>/stop/", views.bot_stop, name="stop"),
    path("bots/<int:pk>/delete/", views.bot_delete, name="delete"),
    path("bots/<int:pk>/archive/", views.bot_archive, name="archive"),
    path("bots/<int:pk>/candles.json", views.bot_candles, name="candles"),
    path(
        "bots/<int:pk>/round-trips.csv",
        views.bot_export,
        {"what": "round-trips"},
        name="round_trips_csv",
    ),
    path("bots/<int:pk>/trades.csv", views.bot_export, {"what": "trades"}, name="fills_csv"),
    path("backtests/", views.backtest_list, name="backtests"),
    path("backtests/new/", form_views.backtest_new, name="backtest_new"),
    path("backtests/preview/", form_views.backtest_preview, name="backtest_preview"),
    path("backtests/<int:pk>/", views.backtest_detail, name="backtest"),
    path("backtests/<int:pk>/data.json", views.backtest_data, name="backtest_data"),
]
