"""L3-L5 vision-language tiers: an OpenAI-compatible HTTP client (vLLM in production), an
in-process transformers backend (CPU / development), yes/no scoring and vLLM launch specs.

Importing this package is cheap: httpx, torch and transformers load only inside the modules that
need them.
"""
