"""Queueing-network models (on ciw) and demand forecasting (on statsmodels) for the scalability notebooks."""

__version__ = "0.1.0"
