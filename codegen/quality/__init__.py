"""Dead-code check for generated model packages.

Small rules in the spirit of Fixit (`codegen/quality/rules/`, one per file), each carrying
VALID and INVALID example packages that are its tests: constant conditions, ModelArgs
fields nothing reads, branches no config accepted by `from_hf_config` can reach, and
model.py/args.py functions nothing calls. `prose.py` checks the text (no comment or
docstring names another model or an HF config field the target lacks); it needs the
target's configuration file, so the coverage sweep runs it, not `lint`; so does
`unused_arguments.py` (ruff's ARG, less the parameters a caller passes by contract). The
static facts they share (which ModelArgs fields every accepted config pins to one value,
and where the package reads them) live in `facts.py`; `evaluate.py` folds small
expressions. `codegen lint --dead-code DIR` and `python -m codegen.quality DIR` run it;
scaffold's `fold_constant_branches` transform makes generated packages pass it.

Light: libcst only (no torch, no transformers).
"""
