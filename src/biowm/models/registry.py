"""Model classes by name, so a saved directory can be loaded without knowing its class."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TypeVar

from biowm.core.errors import InvalidInputError
from biowm.core.model_io import CONFIG
from biowm.core.world_model import WorldModel

_MODELS: dict[str, type] = {}
M = TypeVar("M", bound=type)


def register_model(name: str):  # type: ignore[no-untyped-def]
    """Class decorator: `@register_model("linear")` records the class under `name`."""

    def decorate(cls: M) -> M:
        cls.model_name = name  # type: ignore[attr-defined]
        _MODELS[name] = cls
        return cls

    return decorate


def model_classes() -> dict[str, type]:
    import biowm.models  # noqa: F401 - importing the package registers the built-in models

    return dict(_MODELS)


def load_world_model(directory: str | os.PathLike[str]) -> WorldModel:
    """Load any registered model from its directory (the class is named in config.json)."""
    config_path = Path(directory) / CONFIG
    if not config_path.is_file():
        raise InvalidInputError(f"{directory}: not a model directory (no {CONFIG})")
    try:
        name = json.loads(config_path.read_text()).get("model_class")
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"{config_path}: not valid JSON ({error})") from None
    classes = model_classes()
    if name not in classes:
        raise InvalidInputError(
            f"{directory}: unknown model class {name!r}; known: {sorted(classes)}"
        )
    return classes[name].load(directory)  # type: ignore[no-any-return,attr-defined]
