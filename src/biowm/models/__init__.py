"""World models and baselines, all behind the `WorldModel` protocol; no domain knowledge here."""

from biowm.models import (  # noqa: F401 - importing registers the built-in models
    ensemble,
    latent,
    linear,
    persistence,
    sequence,
    tabular,
    tabular_neural,
)
from biowm.models.registry import load_world_model, model_classes, register_model

__all__ = ["load_world_model", "model_classes", "register_model"]
