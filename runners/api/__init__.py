"""The HTTP API's routes (``/api/v1`` over the query layer), who may call them and how
errors are answered; :mod:`runners.server` assembles them with the pages."""

from skyledger.runners.api.routes import router

__all__ = ["router"]
