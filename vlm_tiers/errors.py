"""Every error the VLM tiers raise, in one tree.

    VLMError                      base class; a tier adapter turns any of these into Vote.abstain
    ├── TierUnavailableError      every endpoint of the tier has an open circuit breaker
    ├── VLMConnectionError        the request did not get an HTTP answer (refused, reset, DNS)
    │   └── VLMTimeoutError       ... or not within the call's timeout
    ├── VLMHTTPError              the server answered with a non-2xx status (status_code, body)
    └── ReplyParseError           the reply cannot be turned into a probability (garbage, truncated)

`VLMConnectionError`, `VLMTimeoutError` and `VLMHTTPError` with a 5xx status count as endpoint
failures for the circuit breaker; a 4xx is our request's fault and does not open the circuit.
"""

from __future__ import annotations

from cascade.types import AbstainCause


class VLMError(Exception):
    """Base class of every VLM tier error."""


class TierUnavailableError(VLMError):
    """No endpoint of the tier may be called now (all circuits open)."""


class VLMConnectionError(VLMError):
    """The request got no HTTP answer."""


class VLMTimeoutError(VLMConnectionError):
    """The request got no answer within its timeout."""


class VLMHTTPError(VLMError):
    """The server answered with an error status."""

    def __init__(self, message: str, status_code: int, body: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body

    @property
    def server_fault(self) -> bool:
        return self.status_code >= 500 or self.status_code == 429


class ReplyParseError(VLMError):
    """The model's reply has no usable answer."""


def abstain_cause(exc: VLMError) -> AbstainCause:
    """The tier's abstain cause for one of these errors: breaker, deadline (a timeout) or error."""
    if isinstance(exc, TierUnavailableError):
        return AbstainCause.BREAKER
    if isinstance(exc, VLMTimeoutError):
        return AbstainCause.DEADLINE
    return AbstainCause.ERROR
