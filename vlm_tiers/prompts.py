"""Chat-completion request bodies for the two prompt kinds (pure: no I/O)."""

from __future__ import annotations

from typing import Any

from vlm_tiers.config import ServerFeatures

CHOICES = ["yes", "no"]


def messages(image_url: str, question: str, system: str | None = None) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    if system:
        msgs.append({"role": "system", "content": system})
    msgs.append(
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": image_url}},
                {"type": "text", "text": question},
            ],
        }
    )
    return msgs


def _constrain(body: dict[str, Any], features: ServerFeatures) -> None:
    if features.guided == "structured_outputs":
        body["structured_outputs"] = {"choice": CHOICES}
    elif features.guided == "guided_choice":
        body["guided_choice"] = CHOICES
    elif features.guided == "regex":
        body["regex"] = "(yes|no)"


def _logprobs(body: dict[str, Any], features: ServerFeatures) -> None:
    if features.logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = features.top_logprobs


def yesno_request(
    model: str, image_url: str, question: str, features: ServerFeatures, system: str | None = None, max_tokens: int = 1
) -> dict[str, Any]:
    """One short, greedy, constrained answer whose first token's logprobs give P(yes)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages(image_url, question, system),
        "max_tokens": max_tokens,
        "temperature": 0.0,
    }
    _logprobs(body, features)
    _constrain(body, features)
    return body


def thinking_request(
    model: str,
    image_url: str,
    question: str,
    features: ServerFeatures,
    system: str | None = None,
    max_tokens: int = 1024,
) -> dict[str, Any]:
    """Reasoning first, then a strict final 'ANSWER: yes|no' line (not constrained: the
    reasoning must be free; the parser enforces the final line)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages(image_url, question, system),
        "max_tokens": max_tokens,
        "temperature": 0.0,
    }
    _logprobs(body, features)
    return body
