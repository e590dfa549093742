"""World models and baselines, all behind the `WorldModel` protocol; no domain knowledge here."""

from biowm.models import ensemble, latent, linear, persistence, sequence  # noqa: F401 - register built-ins
from biowm.models.registry import load_world_model, model_classes, register_model

__all__ = ["load_world_model", "model_classes", "register_model"]
