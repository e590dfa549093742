"""The domain registry: how the CLI and benchmarks discover biological systems.

Each domain package under `biowm.domains` (and any installed package exposing the
`biowm.domains` entry-point group) registers a `Domain` on import. Adding a domain never
edits the CLI.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from biowm.core.errors import InvalidInputError

VERBS = ("simulate", "train", "evaluate", "predict", "plan", "control", "benchmark", "report")


@dataclass
class Domain:
    """One biological system: its simulator factory and the CLI verbs it implements.

    `commands` maps a verb to a plain function whose typed parameters become the verb's
    options (Typer), e.g. `biowm simulate glucose --n 10` calls `commands["simulate"]`.
    """

    name: str
    summary: str
    make_simulator: Callable[..., Any]
    commands: dict[str, Callable[..., Any]] = field(default_factory=dict)
    make_env: Callable[..., Any] | None = None
    demo: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.commands) - set(VERBS))
        if unknown:
            raise ValueError(f"domain {self.name!r}: unknown verbs {unknown}; verbs are {VERBS}")


_DOMAINS: dict[str, Domain] = {}
_DISCOVERED = False


def register(domain: Domain) -> Domain:
    """Add `domain` to the registry (re-registering the same name replaces it)."""
    _DOMAINS[domain.name] = domain
    return domain


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    import biowm.domains as builtin

    for module in pkgutil.iter_modules(builtin.__path__):
        if module.ispkg:
            importlib.import_module(f"biowm.domains.{module.name}")
    for entry in importlib.metadata.entry_points(group="biowm.domains"):
        entry.load()


def domains() -> dict[str, Domain]:
    """All registered domains by name, discovering built-in and plug-in ones on first use."""
    _discover()
    return dict(sorted(_DOMAINS.items()))


def get_domain(name: str) -> Domain:
    found = domains()
    if name not in found:
        raise InvalidInputError(f"unknown domain {name!r}; registered domains: {sorted(found)}")
    return found[name]
