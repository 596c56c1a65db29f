"""The house model registry: the reference model packages codegen verifies and copies.

`MODEL_SPECS` maps a model name to "module:ATTRIBUTE" of its `ModelSpec`, the module path
relative to this package. It is a plain dict of strings so that `codegen lint` can check it
without importing anything; `codegen register` edits it with a codemod.
"""

MODEL_SPECS = {
    "deepseek_v3": "deepseek_v3.spec:SPEC",
    "llama": "llama.spec:SPEC",
    "qwen2": "qwen2.spec:SPEC",
    "qwen3": "qwen3.spec:SPEC",
    "qwen3_moe": "qwen3_moe.spec:SPEC",
}
