"""`codegen verify`: the parity oracle between a model package and the real transformers model.

tiny_config -> hf_checkpoint (random HF model saved as safetensors) -> load through the
package's adapter -> compare logits -> on failure, divergence names the first bad module.
"""
