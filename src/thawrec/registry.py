"""Names -> model classes, so YAML configs, suites and the CLI build models without eval.

Models register themselves where they are defined::

    @register("ranker", "base_dnn")
    class BaseDNN(RecModel): ...

This module imports no model (the layers run one way: models import the registry, never the
reverse). The built-in models register when the package :mod:`thawrec.models` is imported; a
lookup imports it by name first, so ``build_model("poso", ...)`` works from anywhere, and a
third-party package registers its own models simply by being imported.

Families: ``ranker`` (CTR/ranking models: ``build(feature_map, cfg, **deps)``), ``retriever``
(two-tower models under the retrieval contract, same signature) and ``clusterer`` (user
clustering methods of DAUC's protocol: ``from_views(views, n_clusters, cfg)``).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, TypeVar

from thawrec.errors import ConfigError

__all__ = ["FAMILIES", "register", "get", "names", "build_model", "build_clusterer"]

FAMILIES = ("ranker", "retriever", "clusterer")
_REGISTRY: dict[str, dict[str, type]] = {f: {} for f in FAMILIES}
_BUILTIN_PACKAGE = "thawrec.models"

T = TypeVar("T", bound=type)


def register(family: str, name: str) -> Callable[[T], T]:
    """Class decorator: make ``cls`` buildable as ``name`` in ``family``. A name taken by another
    class is an error (two models must not silently shadow each other)."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family '{family}'. Fix: use one of {FAMILIES}")

    def deco(cls: T) -> T:
        have = _REGISTRY[family].get(name)
        if have is not None and have is not cls and have.__qualname__ != cls.__qualname__:
            raise ConfigError(f"{family} '{name}' is registered twice ({have.__module__}.{have.__qualname__} "
                              f"and {cls.__module__}.{cls.__qualname__}). Fix: give one of them another name")
        _REGISTRY[family][name] = cls
        cls.registry_name = name
        return cls

    return deco


def _load_builtin() -> None:
    importlib.import_module(_BUILTIN_PACKAGE)  # its __init__ imports every built-in model module


def names(family: str) -> list[str]:
    """Registered names of a family, sorted."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family '{family}'. Fix: use one of {FAMILIES}")
    _load_builtin()
    return sorted(_REGISTRY[family])


def get(family: str, name: str) -> type:
    """The class registered as ``name`` in ``family``; a ConfigError listing the valid names."""
    valid = names(family)
    try:
        return _REGISTRY[family][name]
    except KeyError:
        others = [f for f in FAMILIES if name in _REGISTRY[f]]
        hint = f" ('{name}' is a {others[0]})" if others else ""
        raise ConfigError(f"unknown {family} '{name}'{hint}. Fix: choose one of {valid}") from None


def build_model(name: str, feature_map: Any, cfg: dict[str, Any] | None = None, **deps: Any) -> Any:
    """A ranker or retriever by name. ``deps`` are trained models a method builds on (e.g.
    Meta-Embedding's ``base``)."""
    for family in ("ranker", "retriever"):
        _load_builtin()
        if name in _REGISTRY[family]:
            return _REGISTRY[family][name](feature_map, cfg, **deps)
    valid = names("ranker") + names("retriever")
    raise ConfigError(f"unknown model '{name}'. Fix: choose one of {valid}")


def build_clusterer(name: str, views: Any, n_clusters: int, cfg: dict[str, Any] | None = None) -> Any:
    """A user clustering method (DAUC's Table 2/3) sized for ``views``."""
    return get("clusterer", name).build(views, n_clusters, cfg)
