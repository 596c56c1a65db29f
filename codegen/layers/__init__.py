"""House building blocks shared by the references and the packages generated from them.

Only pieces whose maths is identical across models live here (RMSNorm, the RoPE family);
everything architecture-specific stays in the model package, where a reader expects it.
"""
