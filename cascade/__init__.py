"""The pipeline: Frame -> levels L0..L6 -> Verdict, with routing bands and a deadline budget.

Nothing in this package knows about Bittensor, HTTP or FiftyOne.
"""

from cascade.types import Frame, Level, Verdict, Vote

__all__ = ["Frame", "Level", "Verdict", "Vote"]
