"""One name -> builder registry for policies, losses, models and datasets.

A ``Registry`` maps names to classes or factory functions. Its rules are the same for all four kinds:
registering a different object under a taken name is an error (the same object again is a no-op); an
unknown name is a ``KeyError`` that names the closest registered one; the keyword-only parameters of a
builder's signature (over the class's MRO) are its parameter schema; built-in names may live in modules
imported on first use (``lazy``), so a module can import its registry without an import cycle.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from typing import Generic, TypeVar

from streamlabel.keys import UnknownKeyError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> builders of one ``kind`` ("policy", "loss term", "model", "dataset")."""

    def __init__(self, kind: str, *, base: type | None = None, lazy: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.base = base  # registered classes must subclass it (None: any callable)
        self._lazy = dict(lazy or {})  # built-in name -> module that registers it on import
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: make ``builder`` available as ``name``."""

        def wrap(builder: T) -> T:
            if self.base is not None and not (isinstance(builder, type) and issubclass(builder, self.base)):
                raise TypeError(f"{getattr(builder, '__name__', builder)!r} must subclass {self.base.__name__} "
                                f"to be registered as a {self.kind}")
            if name in self._entries and self._entries[name] is not builder:
                taken = getattr(self._entries[name], "__name__", repr(self._entries[name]))
                raise ValueError(f"{self.kind} name {name!r} is already registered by {taken}")
            self._entries[name] = builder
            return builder

        return wrap

    def names(self) -> list[str]:
        """Every name ``get`` accepts, sorted."""
        return sorted(set(self._entries) | set(self._lazy))

    def get(self, name: str) -> T:
        """The builder of ``name``; an unknown name is a KeyError naming the closest registered one."""
        if name not in self._entries and name in self._lazy:
            importlib.import_module(self._lazy[name])
        if name not in self._entries:
            close = difflib.get_close_matches(str(name), self.names(), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownKeyError(f"unknown {self.kind} {name!r}{hint} (available: {', '.join(self.names())})")
        return self._entries[name]

    def parameters(self, name: str) -> dict[str, object]:
        """Keyword-only parameters and their defaults: the schema of ``name``'s configuration."""
        builder = self.get(name)
        functions = ([vars(k)["__init__"] for k in reversed(builder.__mro__) if "__init__" in vars(k)
                      and k is not object] if isinstance(builder, type) else [builder])
        params: dict[str, object] = {}
        for function in functions:
            for pname, param in inspect.signature(function).parameters.items():
                if param.kind is param.KEYWORD_ONLY:
                    params[pname] = param.default
        return params
