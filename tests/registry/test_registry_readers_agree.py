"""`lint` reads registries with `ast` (fast), the codemods with libcst (exact): same answers.

If the two readers ever disagreed, lint would pass a registry the codemods then edit
differently (or the reverse); this pins them together on every fixture shape.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from codegen.codemods.add import read_entries
from codegen.codemods.selector import parse_selector
from codegen.lint.read import find_containers, parse_file

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCES = Path(__file__).resolve().parents[2] / "references" / "__init__.py"

CASES = [
    ("archon_init.py.txt", "from areal.experimental.models.archon"),
    ("archon_lines_init.py.txt", "from areal.experimental.models.archon"),
    ("nemo_registry.py.txt", "MODEL_ARCH_MAPPING"),
    ("nemo_registry.py.txt", "_CUSTOM_CONFIG_REGISTRATIONS"),
    ("atom_model_runner.py.txt", "support_model_arch_dict"),
    ("vllm_registry.py.txt", "_TEXT_GENERATION_MODELS"),
    ("vllm_registry.py.txt", "_EMBEDDING_MODELS"),
    ("dispatch_chain.py.txt", "if model_type"),
    ("typed_config.py.txt", "ModelType"),
    ("typed_config.py.txt", "SUPPORTED_MODEL_TYPES"),
    ("typed_config.py.txt", "Registry.CONFIGS"),
    ("vllm_0_33_registry.py.txt", "_TEXT_GENERATION_MODELS"),
    ("vllm_0_33_examples.py.txt", "_TEXT_GENERATION_EXAMPLE_MODELS"),
    ("atom_plugin_register.py.txt", "_ATOM_SUPPORTED_MODELS"),  # main binding, not .update
    ("atom_plugin_vllm_register.py.txt", "_VLLM_MODEL_REGISTRY_OVERRIDES"),
    ("atom_plugin_model_wrapper.py.txt", "_ATOM_MODEL_CLASSES"),
    ("pithtrain_training.py.txt", "if module_config.model_type"),
]


def libcst_entries(path: Path, container: str):
    site, entries = read_entries(path.read_text(), container, path=str(path))
    return site.kind, [(e.key, e.line, e.values) for e in entries]


def ast_entries(path: Path, container: str):
    [found] = find_containers(parse_file(path), parse_selector(container))
    return found.kind, [(e.key, e.line, e.values) for e in found.entries]


@pytest.mark.parametrize(("name", "container"), CASES)
def test_ast_and_libcst_readers_agree(name, container):
    path = FIXTURES / name
    assert ast_entries(path, container) == libcst_entries(path, container)


def test_readers_agree_on_the_house_registry():
    assert ast_entries(REFERENCES, "MODEL_SPECS") == libcst_entries(REFERENCES, "MODEL_SPECS")
