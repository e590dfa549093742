"""Generic benchmark machinery: forecast scores and evaluation protocols (no domain knowledge)."""

from biowm.bench.forecast_metrics import (
    coverage_by_horizon,
    crps_by_horizon,
    crps_ensemble,
    rmse_by_horizon,
    score_forecast,
)

__all__ = [
    "coverage_by_horizon",
    "crps_by_horizon",
    "crps_ensemble",
    "rmse_by_horizon",
    "score_forecast",
]
