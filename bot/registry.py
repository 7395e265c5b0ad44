"""Registries, not string capabilities: reviewers, raters and hosts register by name.

Each entry is a factory *and* the frozen dataclass of its options (every field with ``help`` text), so a
``[reviewers.llm]`` or ``[github]`` table in ``.sieve.toml`` is checked against the options the component
really takes: an unknown key or a value of the wrong type is an error naming the key and what is expected,
never a silent coercion. :func:`parse_options` is that check; :func:`describe` lists a class's options.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from bot.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → (factory, options class) map. Tests register fakes the same way real parts do."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._options: dict[str, type | None] = {}

    def register(self, name: str, options: type | None = None) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            self.add(name, factory, options)
            return factory

        return decorator

    def add(self, name: str, factory: Callable[..., T], options: type | None = None) -> None:
        if options is not None and not (dataclasses.is_dataclass(options) and isinstance(options, type)):
            raise TypeError(f"options of {self.kind} {name!r} must be a dataclass, not {options!r}")
        self._factories[name] = factory
        self._options[name] = options

    def remove(self, name: str) -> None:
        self._factories.pop(name, None)
        self._options.pop(name, None)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def check_name(self, name: str, setting: str) -> str:
        """``name`` if it is registered; otherwise a ConfigError naming ``setting`` and the choices."""
        if name not in self._factories:
            prefix = "" if setting == self.kind else f"{setting}: "
            raise ConfigError(f"{prefix}unknown {self.kind} {name!r}",
                              hint=f"choose from: {', '.join(self.names()) or '(none registered)'}")
        return name

    def options_class(self, name: str) -> type | None:
        """The options dataclass ``name`` registered (None: it takes no options)."""
        self.check_name(name, self.kind)
        return self._options.get(name)

    def options(self, name: str, raw: Mapping[str, Any] | None, where: str) -> Any:
        """``raw`` (a settings table) checked strictly against ``name``'s options class."""
        cls = self.options_class(name)
        if cls is None:
            if raw:
                raise ConfigError(f"{where}: the {self.kind} {name!r} takes no options",
                                  hint=f"remove the [{where}] table")
            return None
        return parse_options(cls, raw or {}, where)

    def create(self, name: str, *args: object, **kwargs: object) -> T:
        self.check_name(name, self.kind)
        return self._factories[name](*args, **kwargs)


def describe(cls: type) -> list[tuple[str, str, Any, str]]:
    """(key, expected type in words, default, help) for each option of ``cls``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append((f.name, type_words(hints[f.name]), default, str(f.metadata.get("help", ""))))
    return out


def type_words(kind: Any) -> str:
    """A type annotation in the words an error message uses ("a whole number", "a list of strings")."""
    args = typing.get_args(kind)
    if _is_optional(kind):
        inner = [a for a in args if a is not type(None)]
        return f"{type_words(inner[0])} (or left out)"
    origin = typing.get_origin(kind)
    if origin is tuple:
        return f"a list of {type_words(args[0]).removeprefix('a ').removeprefix('an ')}s"
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}.get(kind, str(kind))


def _is_optional(kind: Any) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind)


def convert(kind: Any, value: Any, key: str, hint: str | None = None) -> Any:
    """``value`` as ``kind`` (bool, int, float, str, tuple[str, ...], X | None), or a ConfigError naming ``key``.

    Only lossless readings are accepted: a TOML integer is a valid float; ``true`` is not a number, 2.9 is not
    a whole number, a table is not a list. Numbers must be finite. ``hint`` replaces the generic advice of the
    error (an option says there what a right value looks like).
    """
    if _is_optional(kind):
        if value is None:
            return None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    ok = False
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    elif typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        if isinstance(value, (list, tuple)):
            try:
                return tuple(convert(item, v, key) for v in value)
            except ConfigError:
                pass  # reported for the whole list below
    if not ok:
        raise ConfigError(f"setting {key} is {show_value(value)}, expected {type_words(kind)}",
                          hint=hint or f"fix {key} in .sieve.toml")
    return value


def show_value(value: Any) -> str:
    """A value as TOML writes it (true, 2.9, "text", [1]); repr for what JSON cannot say."""
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def parse_options(cls: type, raw: Mapping[str, Any], where: str) -> Any:
    """An instance of the options dataclass ``cls`` from the table ``raw`` found at ``where`` (strict)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"[{where}] must be a table of settings, not {raw!r}",
                          hint=f"write it as [{where}] followed by key = value lines")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]}",
                          hint=f"[{where}] takes: {', '.join(sorted(known))}")
    advice = {f.name: f.metadata.get("hint") for f in dataclasses.fields(cls)}
    values = {key: convert(hints[key], value, f"{where}.{key}", advice.get(key)) for key, value in raw.items()}
    return cls(**values)  # an options class checks its own ranges in __post_init__ (see require)


def require(ok: bool, key: str, value: Any, expected: str) -> None:
    """An options class's range check: a ConfigError naming the setting ``key`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"setting {key} is {show_value(value)}, expected {expected}", hint=f"fix {key} in .sieve.toml")


def is_url(text: str) -> bool:
    """True for an http(s) URL with a host name."""
    try:
        parts = urlsplit(text)
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unbalanced [ in the host
        return False


def check_url(key: str, url: str) -> str:
    """``url`` when it is an http(s) URL with a host; otherwise a ConfigError naming the setting ``key``."""
    require(is_url(url), key, url, "an http(s) URL such as https://host/path")
    return url
