"""Built-in T3 reactors: an HTML report of ranked candidates and a JSON webhook."""

from skyledger.units.t3.report import ReportReactor
from skyledger.units.t3.webhook import WebhookReactor

__all__ = ["ReportReactor", "WebhookReactor"]
