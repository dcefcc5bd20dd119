"""The model (modeling.model: the sklearn pipeline, the P(fraud) pyfunc, thresholds) and the MLflow
Model Registry conventions (modeling.registry: register, promote, resolve the served version)."""
