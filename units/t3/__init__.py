"""Built-in T3 reactors: an HTML report of ranked candidates and a JSON webhook."""

from units.t3.report import ReportReactor
from units.t3.webhook import WebhookReactor

__all__ = ["ReportReactor", "WebhookReactor"]
