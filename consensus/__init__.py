"""Consensus (L6): weighted geometric-mean pooling in odds space and fitting its weights."""

from consensus.pooling import logit, pool, pool_votes, sigmoid

__all__ = ["logit", "pool", "pool_votes", "sigmoid"]
