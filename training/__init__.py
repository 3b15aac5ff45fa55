"""Datasets, the validator transform, head training, offline evaluation."""
