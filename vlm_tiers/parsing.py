"""Turn chat-completion replies into probabilities. Pure functions: no I/O, no clock.

Two reply shapes are scored:
- `yesno`: the first answer token. With logprobs, P(roadwork) = sum P(yes variants) /
  (sum P(yes variants) + sum P(no variants)) over that token's `top_logprobs`; "Yes", " yes" and
  "YES" all count as yes. Without logprobs (or when neither word is among them) the answer text
  decides, at `hard_prob`. Normalising over yes+no makes the number the same whether the server
  reports raw logprobs (vLLM's default `logprobs_mode`) or ones masked by the choice constraint.
- `thinking`: free reasoning (inline `<think>...</think>` or the server's separate
  `reasoning_content`), then a final line `ANSWER: yes|no`. The final answer is parsed strictly:
  a reply cut off by `max_tokens`, or one without exactly that last line, is rejected.

Every failure raises `ReplyParseError` with what was found, so the tier can abstain with a reason.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from vlm_tiers.errors import ReplyParseError

YES = "yes"
NO = "no"
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FINAL = re.compile(r"^\s*\**\s*answer\s*\**\s*:\s*\**\s*(yes|no)\s*\**\s*[.!]?\s*$", re.IGNORECASE)
_PUNCT = " \t\r\n.,!?:;\"'`*()[]{}"


@dataclass(frozen=True)
class Scored:
    """A parsed reply: the probability of roadwork, the answer word and how it was obtained."""

    prob: float
    answer: str
    method: str  # "logprobs" | "text"
    detail: str = ""


def normalise_word(token: str) -> str:
    """' Yes.' -> 'yes'; the byte-level marker 'Ġ' that some servers leave in tokens is dropped."""
    return token.replace("Ġ", " ").replace("▁", " ").strip(_PUNCT).lower()


def _logsumexp(values: list[float]) -> float:
    if not values:
        return -math.inf
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def yes_no_logmass(top_logprobs: list[dict[str, Any]]) -> tuple[float, float]:
    """Log probability mass of the yes- and no-variants among one position's top_logprobs."""
    yes: list[float] = []
    no: list[float] = []
    for item in top_logprobs:
        if not isinstance(item, dict):
            continue
        lp = item.get("logprob")
        if not isinstance(lp, (int, float)) or math.isnan(lp) or lp > 1e-6:
            continue
        word = normalise_word(str(item.get("token", "")))
        if word == YES:
            yes.append(float(lp))
        elif word == NO:
            no.append(float(lp))
    return _logsumexp(yes), _logsumexp(no)


def prob_from_top_logprobs(top_logprobs: list[dict[str, Any]]) -> float | None:
    """P(yes | yes or no) at one position, or None when neither word is among the candidates.

    Computed in log space, so candidates far down the tail (vLLM reports -9999.0) do not underflow.
    """
    log_yes, log_no = yes_no_logmass(top_logprobs)
    if log_yes == -math.inf and log_no == -math.inf:
        return None
    diff = log_no - log_yes
    if diff > 700:
        return 0.0
    return min(max(1.0 / (1.0 + math.exp(diff)), 0.0), 1.0)


def _choice(reply: Any) -> dict[str, Any]:
    if not isinstance(reply, dict):
        raise ReplyParseError(f"reply is not a JSON object: {str(reply)[:80]!r}")
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ReplyParseError(f"reply has no choices: keys {sorted(reply)}")
    return choices[0]


def _content(choice: dict[str, Any]) -> str:
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ReplyParseError(f"choice has no message: keys {sorted(choice)}")
    content = message.get("content")
    return content if isinstance(content, str) else ""


def _logprob_tokens(choice: dict[str, Any]) -> list[dict[str, Any]]:
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return []
    content = logprobs.get("content")
    return [t for t in content if isinstance(t, dict)] if isinstance(content, list) else []


def answer_word(text: str) -> str | None:
    """The yes/no answer at the start of a short reply ('Yes.', ' no', 'Yes, there are cones')."""
    text = _THINK_BLOCK.sub("", text)
    words = text.strip().split()
    if not words:
        return None
    first = normalise_word(words[0])
    return first if first in (YES, NO) else None


def parse_yesno(reply: Any, hard_prob: float = 0.85) -> Scored:
    """Score a `yesno` reply (see the module docstring)."""
    choice = _choice(reply)
    text = _content(choice)
    for position in _logprob_tokens(choice):
        word = normalise_word(str(position.get("token", "")))
        if not word:  # a leading space / newline token: look at the next position
            continue
        prob = prob_from_top_logprobs(position.get("top_logprobs") or [])
        if prob is not None:
            return Scored(prob, YES if prob >= 0.5 else NO, "logprobs")
        break
    word = answer_word(text)
    if word is None:
        raise ReplyParseError(
            f"no yes/no answer in reply {text[:80]!r} (finish_reason {choice.get('finish_reason')!r})"
        )
    return Scored(hard_prob if word == YES else 1.0 - hard_prob, word, "text")


def final_answer(text: str) -> str:
    """The strict final answer of a reasoning reply: its last non-empty line is 'ANSWER: yes|no'."""
    visible = _THINK_BLOCK.sub("", text)
    if "<think>" in visible.lower():
        raise ReplyParseError("reasoning block was never closed (no </think>): reply truncated")
    lines = [ln for ln in visible.strip().splitlines() if ln.strip()]
    if not lines:
        raise ReplyParseError("reply has no final answer after the reasoning")
    match = _FINAL.match(lines[-1])
    if match is None:
        raise ReplyParseError(f"last line {lines[-1][:80]!r} is not 'ANSWER: yes' or 'ANSWER: no'")
    return match.group(1).lower()


def _answer_token_prob(tokens: list[dict[str, Any]], answer: str) -> float | None:
    """Probability at the last answer-word token (the one after 'ANSWER:'), if logprobs came."""
    for position in reversed(tokens):
        if normalise_word(str(position.get("token", ""))) == answer:
            return prob_from_top_logprobs(position.get("top_logprobs") or [])
    return None


def parse_thinking(reply: Any, hard_prob: float = 0.85) -> Scored:
    """Score a `thinking` reply strictly (see the module docstring)."""
    choice = _choice(reply)
    if choice.get("finish_reason") == "length":
        raise ReplyParseError(
            "reply was cut off by max_tokens (finish_reason 'length'); "
            "raise the tier's max_tokens or shorten the reasoning"
        )
    answer = final_answer(_content(choice))
    prob = _answer_token_prob(_logprob_tokens(choice), answer)
    if prob is not None:
        return Scored(prob, answer, "logprobs", "final answer token")
    return Scored(hard_prob if answer == YES else 1.0 - hard_prob, answer, "text")
