from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q


class AdvisorRunQuerySet(models.QuerySet["AdvisorRun"]):
    def owned_by(self, user: Any) -> AdvisorRunQuerySet:
        return self.filter(owner=user)


class AdvisorRun(models.Model):
    """One question to the advisor and everything that came of it, kept for the record.

    `inputs` is the AdvisorContext exactly as Claude saw it (market facts and the bot's
    constraints: never credentials, never who the user is).
    """

    class Source(models.TextChoices):
        CLAUDE = "claude", "Claude"
        BASELINE = "baseline", "Quantitative baseline"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Asking and backtesting"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    class Decision(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    # Empty only for operator runs from `manage.py advise` without --bot or --user.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="advisor_runs",
        null=True,
        blank=True,
    )
    bot = models.ForeignKey(
        "bots.Bot", on_delete=models.SET_NULL, related_name="advisor_runs", null=True, blank=True
    )
    exchange = models.CharField(max_length=30, default="binance")
    symbol = models.CharField(max_length=30)
    capital = models.DecimalField(max_digits=30, decimal_places=12)
    risk_preference = models.CharField(max_length=10, default="medium")
    inputs = models.JSONField(default=dict)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.CLAUDE)
    model = models.CharField(max_length=80, blank=True)
    raw_response = models.JSONField(null=True, blank=True)
    # "" while unknown, "ok" for a usable suggestion, else why it was not usable.
    validation = models.CharField(max_length=500, blank=True)
    suggestion = models.JSONField(null=True, blank=True)
    backtests = models.JSONField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    error = models.CharField(max_length=500, blank=True)
    decision = models.CharField(max_length=10, choices=Decision.choices, default=Decision.PENDING)
    decision_reason = models.CharField(max_length=500, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = AdvisorRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["owner", "created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(source__in=["claude", "baseline"]), name="advisor_run_source_valid"
            ),
            models.CheckConstraint(
                condition=Q(decision__in=["pending", "accepted", "rejected"]),
                name="advisor_run_decision_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"Advice #{self.pk} for {self.symbol} ({self.get_source_display()})"

    @property
    def quote_asset(self) -> str:
        return self.symbol.split("/")[-1]

    @property
    def base_asset(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.DONE, self.Status.FAILED)

    @property
    def can_decide(self) -> bool:
        return (
            self.status == self.Status.DONE
            and self.decision == self.Decision.PENDING
            and self.suggestion is not None
        )
