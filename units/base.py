"""What every unit has: a registered name, a version and a typed, frozen configuration.

    class MyFilter(Filter):
        version = "1.2"

        class Config(UnitConfig):
            min_rb: float = Field(0.5, description="minimum real/bogus score")

        def decide(self, alert: Alert) -> Decision: ...

A unit is built from a configuration (a model instance, a mapping or nothing for the
defaults); an invalid one is refused with a ConfigError naming the unit and the field.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from functools import cache
from hashlib import blake2b
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from skyledger.ledger.errors import ConfigError
from skyledger.ledger.ids import config_id

__all__ = ["Unit", "UnitConfig", "source_digest"]


class UnitConfig(BaseModel):
    """Base of unit configurations: frozen, and unknown options are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Unit:
    """Base of all units. Subclasses set ``version`` and may define a nested ``Config``."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "0"
    Config: ClassVar[type[BaseModel]] = UnitConfig

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" not in cls.__dict__:
            cls.name = cls.__name__

    def __init__(self, config: BaseModel | Mapping[str, Any] | None = None) -> None:
        self.config = self.validate_config(config)

    @classmethod
    def validate_config(cls, config: BaseModel | Mapping[str, Any] | None) -> BaseModel:
        """Return the unit's configuration model, or raise ConfigError naming the field."""
        if isinstance(config, cls.Config):
            return config
        if isinstance(config, BaseModel):
            config = config.model_dump()
        try:
            return cls.Config.model_validate(dict(config or {}))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(config)'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigError(f"unit {cls.name!r}: {problems}") from None

    @property
    def config_hash(self) -> str:
        """Return the hash of the full configuration (the key of the configuration registry)."""
        config = self.config  # frozen: its hash is computed once
        cached = self.__dict__.get("_config_hash")
        if cached is None or cached[0] is not config:
            cached = (config, config_id(config.model_dump(mode="json")))
            self.__dict__["_config_hash"] = cached
        return str(cached[1])

    @classmethod
    def digest(cls) -> str:
        """Return a digest of the source of the module that defines the unit."""
        return source_digest(cls.__module__, cls.__qualname__)


@cache
def source_digest(module: str, qualname: str) -> str:
    """Return the BLAKE2b digest of a module's source (or of the name if it has none)."""
    try:
        source = inspect.getsource(sys.modules[module])
    except (KeyError, OSError, TypeError):
        source = f"{module}:{qualname}"
    return blake2b(source.encode(), digest_size=16).hexdigest()
