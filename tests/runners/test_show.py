"""What people read: the run summary as a table."""

from __future__ import annotations

import io

from rich.console import Console

from runners.show import show_summary
from runners.summary import RunSummary


def printed(summary: RunSummary) -> str:
    out = Console(file=io.StringIO(), width=120, color_system=None)
    show_summary(out, summary)
    text = out.file.getvalue()
    assert isinstance(text, str)
    return text


def test_two_entries_of_one_reactor_are_told_apart() -> None:
    summary = RunSummary("r" * 32, "j" * 32, "sqlite:///x.sqlite", status="ok")
    summary.reactions = [
        {"reactor": "WebhookReactor", "index": 0, "intended": 3},
        {"reactor": "WebhookReactor", "index": 1, "intended": 5},
        {"reactor": "ReportReactor", "index": 2, "intended": 1},
    ]
    text = printed(summary)
    assert "T3 WebhookReactor (t3 entry 0): intended" in text
    assert "T3 WebhookReactor (t3 entry 1): intended" in text
    assert "T3 ReportReactor: intended" in text  # alone: no entry number needed


def test_a_resumed_source_is_shown_under_the_alerts_it_read() -> None:
    summary = RunSummary("r" * 32, "j" * 32, "sqlite:///x.sqlite", status="ok")
    summary.sources = [
        {"source": "FileSource:night", "read": 0, "resumed_after": {"item": 35, "record": 0}},
        {"source": "FileSource:new", "read": 4, "resumed_after": None},
    ]
    lines = printed(summary).splitlines()
    at = next(i for i, line in enumerate(lines) if "alerts read" in line)
    assert "resumed FileSource:night after item 35 " in lines[at + 1]
    assert not any("FileSource:new" in line for line in lines)  # read from the start
