"""The HTTP API (``skyledger serve``): ``/api/v1`` over the query layer, with access by
channel membership."""

from runners.api.app import API_VERSION, ApiSettings, create_app

__all__ = ["API_VERSION", "ApiSettings", "create_app"]
