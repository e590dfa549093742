"""HTML reports, plots and model cards built from benchmark results."""
