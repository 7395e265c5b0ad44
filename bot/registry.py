"""Registries, not string capabilities: reviewers, raters and hosts register by name."""

from __future__ import annotations

from typing import Callable, Generic, TypeVar

from bot.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → factory map. Tests register fakes the same way real parts do."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            self._factories[name] = factory
            return factory

        return decorator

    def add(self, name: str, factory: Callable[..., T]) -> None:
        self._factories[name] = factory

    def remove(self, name: str) -> None:
        self._factories.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def create(self, name: str, *args: object, **kwargs: object) -> T:
        try:
            factory = self._factories[name]
        except KeyError:
            raise ConfigError(f"unknown {self.kind} {name!r}",
                              hint=f"choose from: {', '.join(self.names()) or '(none registered)'}") from None
        return factory(*args, **kwargs)
