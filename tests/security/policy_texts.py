"""Policy text the attack tests start from: a local model and a priced network model, the
local one first. Tests add keys at known lines (the line numbers they assert depend on it)."""

BASE = """\
version: 1
name: base
models:
  local:
    provider: llamacpp
    gguf: bundled:gemma-3-270m
    local: true
  gpt:
    provider: openai
    model: gpt-4
    tier: premium
    price: {input: 1, output: 2}
policy:
  cascade: [local, gpt]
  privacy: false
"""
