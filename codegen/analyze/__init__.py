"""Static architecture analysis of Hugging Face modeling files (`codegen analyze`).

    from codegen.analyze import analyze
    features = analyze("qwen3")            # model_type | modeling_*.py | checkpoint folder
    features.attention.qk_norm             # "per_head"
    features.evidence["attention.qk_norm"] # "modeling_qwen3.py:229"
    features.to_dict()                     # the `--json` object

Nothing is imported or executed from the analysed files, and neither torch nor transformers
is imported: sources are parsed with libcst and interpreted over plain data.

Pipeline (one module per job):

    locate        TARGET -> files (model_type via transformers' auto mappings, read statically)
    source        parse, index classes/functions/imports, follow `..x.modeling_x` imports
    config        config class defaults + config.json + interpreted `__post_init__`
    evaluate      the safe interpreter: instantiate the model statically (ModuleRec tree)
    model         entry class, config, decoder stack
    roles         what each module is (norm, attention, mlp, moe, router, experts, mixer)
    dataflow      forward passes traced symbolically (Terms)
    detect_*      attention, rope, ffn, moe, norm, embedding/head, category
    state_dict    HF key pattern; conversion: transformers' on-disk key conversions
    reference     the reference models as a table -> closest + delta
    support       what codegen supports (data) -> unsupported
    report        checklist table / JSON
    features      the Features value (the contract with `scaffold`)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from codegen.analyze.features import Features


def analyze(target: str, config: str | None = None) -> Features:
    """Features of one TARGET (see module docstring); raises CodegenError on user errors."""
    from codegen.analyze.analysis import analyze as run

    return run(target, config)


__all__ = ["analyze"]
