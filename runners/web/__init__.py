"""Web pages over the query layer, served beside the HTTP API by ``skyledger serve``:
server-rendered HTML, light curves drawn as SVG on the server, styles from this package
(nothing from a CDN: the pages work with no internet)."""

from pathlib import Path

from skyledger.runners.web.pages import page_error
from skyledger.runners.web.pages import router as pages

__all__ = ["STATIC", "page_error", "pages"]

STATIC = Path(__file__).parent / "static"
"""The pages' style sheet and icons."""
