"""Tier settings: the README's example profile stays valid; presets say what each server gets."""

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from cascade.config import CascadeConfig
from vlm_tiers.config import HttpTierParams, ImageConfig, LocalTierParams

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_tier_example_is_a_valid_profile():
    block = README.read_text().split("## VLM tiers")[1].split("```yaml")[1].split("```")[0]
    cfg = CascadeConfig.model_validate(yaml.safe_load(block))
    params = HttpTierParams.model_validate(cfg.voters[0].params)
    assert [lc.run_when for lc in cfg.levels] == [(0.05, 0.95), (0.15, 0.85), (0.30, 0.70)]
    assert cfg.voters[0].cost_prior_ms == 400 and params.resolved_features.guided == "structured_outputs"


@pytest.mark.parametrize(
    "server, logprobs, guided",
    [
        ("vllm", True, "structured_outputs"),
        ("vllm-legacy", True, "guided_choice"),
        ("sglang", True, "regex"),
        ("lmdeploy", True, "none"),
        ("transformers", False, "none"),
    ],
)
def test_server_presets(server, logprobs, guided):
    f = HttpTierParams(model="m", endpoints=["http://h:1"], server=server).resolved_features
    assert (f.logprobs, f.guided) == (logprobs, guided)


@pytest.mark.parametrize(
    "prompt, max_tokens, question_has", [("yesno", 1, "Answer yes or no"), ("thinking", 1024, "ANSWER: yes")]
)
def test_prompt_defaults(prompt, max_tokens, question_has):
    p = HttpTierParams(model="m", endpoints=["http://h:1"], prompt=prompt)
    assert p.resolved_max_tokens == max_tokens and question_has in p.resolved_question


@pytest.mark.parametrize(
    "model, data",
    [
        (ImageConfig, {"min_pixels": 10000, "max_pixels": 5000}),
        (HttpTierParams, {"model": "m", "endpoints": ["http://h:1"], "hard_prob": 0.4}),
        (HttpTierParams, {"model": "m", "endpoints": ["http://h:1"], "timeout": 3}),  # unknown key
        (LocalTierParams, {"model": "x", "dtype": "int8"}),
    ],
)
def test_bad_settings_are_refused(model, data):
    with pytest.raises(ValidationError):
        model.model_validate(data)
