"""codegen: onboard Hugging Face decoder architectures into plain PyTorch model packages.

The light modules (analyze, lint, codemods, registry reading) never import torch or
transformers; the heavy ones (verify, references) import them lazily.
"""

__version__ = "0.1.0"
