"""Parsers on recorded chat-completion replies (tests/vlm_tiers/replies/*.json), shaped like vLLM's."""

import json
import math
from contextlib import nullcontext as does_not_raise
from pathlib import Path

import pytest

from vlm_tiers.errors import ReplyParseError
from vlm_tiers.parsing import (
    answer_word,
    final_answer,
    normalise_word,
    parse_thinking,
    parse_yesno,
    prob_from_top_logprobs,
)

REPLIES = Path(__file__).parent / "replies"


def reply(name):
    return json.loads((REPLIES / f"{name}.json").read_text())


def mass(*logprobs):
    return sum(math.exp(lp) for lp in logprobs)


@pytest.mark.parametrize(
    "name, expectation, prob, method",
    [
        # greedy 'yes' with yes/Yes and no/No among the top candidates
        ("yesno_logprobs_yes", does_not_raise(), mass(-0.0513, -3.2) / mass(-0.0513, -3.2, -4.1, -6.0), "logprobs"),
        # 'no' wins; the yes mass still shows in the probability
        ("yesno_logprobs_no", does_not_raise(), mass(-1.8, -5.5) / mass(-1.8, -5.5, -0.2231, -3.9), "logprobs"),
        # ' Yes', 'Ġyes', 'YES' count as yes; ' No', 'no.' as no
        ("yesno_spelling_variants", does_not_raise(), 0.875 / (0.875 + 0.125 + math.exp(-3.0)), "logprobs"),
        # a newline token first: the answer position is the next one
        ("yesno_leading_newline", does_not_raise(), 0.1, "logprobs"),
        # server without logprobs (transformers serve): the text decides at hard_prob
        ("yesno_text_only", does_not_raise(), 0.85, "text"),
        # neither word anywhere, and cut off
        ("yesno_garbage", pytest.raises(ReplyParseError, match="no yes/no answer"), None, None),
        ("yesno_empty_content", pytest.raises(ReplyParseError, match="no yes/no answer"), None, None),
        # an error object instead of a completion
        ("error_object", pytest.raises(ReplyParseError, match="no choices"), None, None),
        ("empty_choices", pytest.raises(ReplyParseError, match="no choices"), None, None),
    ],
)
def test_parse_yesno_recorded(name, expectation, prob, method):
    with expectation:
        scored = parse_yesno(reply(name), hard_prob=0.85)
        assert scored.prob == pytest.approx(prob, abs=1e-4)
        assert scored.method == method
        assert scored.answer == ("yes" if prob >= 0.5 else "no")


@pytest.mark.parametrize(
    "name, expectation, prob, answer",
    [
        # inline <think> block, final line, logprobs of the final answer token
        ("thinking_inline_with_logprobs", does_not_raise(), mass(-0.0834, -6.0) / mass(-0.0834, -6.0, -2.5257), "yes"),
        # reasoning parser on the server: reasoning_content apart, content is the final line only
        ("thinking_reasoning_field", does_not_raise(), 0.15, "no"),
        # markdown bold around the final line is accepted
        ("thinking_markdown_final", does_not_raise(), 0.85, "yes"),
        # cut off by max_tokens
        ("thinking_truncated_length", pytest.raises(ReplyParseError, match="cut off by max_tokens"), None, None),
        # <think> never closed
        ("thinking_unclosed_stop", pytest.raises(ReplyParseError, match="never closed"), None, None),
        # an answer in prose is not the strict final line
        ("thinking_no_final_line", pytest.raises(ReplyParseError, match="is not 'ANSWER: yes'"), None, None),
        ("thinking_final_not_last", pytest.raises(ReplyParseError, match="is not 'ANSWER: yes'"), None, None),
        ("thinking_two_answers", pytest.raises(ReplyParseError, match="is not 'ANSWER: yes'"), None, None),
        ("error_object", pytest.raises(ReplyParseError, match="no choices"), None, None),
    ],
)
def test_parse_thinking_recorded(name, expectation, prob, answer):
    with expectation:
        scored = parse_thinking(reply(name), hard_prob=0.85)
        assert scored.prob == pytest.approx(prob, abs=1e-4)
        assert scored.answer == answer


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        "text",
        3,
        [],
        {"choices": "x"},
        {"choices": [None]},
        {"choices": [{"message": None}]},
        {"choices": [{"message": {"content": None}, "logprobs": "bad"}]},
    ],
)
def test_malformed_replies_raise_parse_error_not_type_errors(garbage):
    for parse in (parse_yesno, parse_thinking):
        with pytest.raises(ReplyParseError):
            parse(garbage)


@pytest.mark.parametrize(
    "top, expected",
    [
        ([{"token": "yes", "logprob": math.log(0.3)}, {"token": "no", "logprob": math.log(0.1)}], 0.75),
        ([{"token": "maybe", "logprob": -0.1}], None),  # neither word
        ([{"token": "yes", "logprob": float("nan")}, {"token": "no", "logprob": -1.0}], 0.0),  # NaN ignored
        ([{"token": "yes", "logprob": 5.0}, {"token": "no", "logprob": -1.0}], 0.0),  # impossible logprob ignored
        ([{"token": "yes", "logprob": -1e9}, {"token": "no", "logprob": -1e9}], 0.5),  # underflow-safe
        (["junk", {"token": "no"}], None),
    ],
)
def test_prob_from_top_logprobs(top, expected):
    assert prob_from_top_logprobs(top) == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    "text, word",
    [
        ("Yes.", "yes"),
        (" no", "no"),
        ("YES, cones", "yes"),
        ("<think>no</think> yes", "yes"),
        ("Maybe", None),
        ("", None),
    ],
)
def test_answer_word(text, word):
    assert answer_word(text) == word


@pytest.mark.parametrize("token, word", [("Ġyes", "yes"), ("▁No", "no"), ("'Yes'", "yes"), ("\n", "")])
def test_normalise_word(token, word):
    assert normalise_word(token) == word


def test_final_answer_is_strict_about_the_last_line():
    assert final_answer("cones everywhere\nANSWER: no\n\n") == "no"
    with pytest.raises(ReplyParseError):
        final_answer("ANSWER: probably yes")
