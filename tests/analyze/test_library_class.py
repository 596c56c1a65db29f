"""Library classes remote code names through transformers' packages, read as text: the
re-exports of the `if TYPE_CHECKING:` block, the lazy `_import_structure` dict (a package
that lists a name there only: `transformers.generation`'s GenerationMixin) and a model
package's star imports of its files' `__all__` (`transformers.models.llama`); a direct
submodule import as before. Nothing imports torch or transformers on the way."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from codegen.analyze import library_class as library
from codegen.analyze.source import Project

REPO = Path(__file__).resolve().parents[2]

# (import line, spelling in the code) -> (class, the file defining it, its folder)
INSTALLED = {
    ("from transformers.modeling_utils import PreTrainedModel", "PreTrainedModel"): (
        "PreTrainedModel",
        "modeling_utils.py",
        "transformers",
    ),
    ("from transformers.pytorch_utils import Conv1D", "Conv1D"): (
        "Conv1D",
        "pytorch_utils.py",
        "transformers",
    ),
    ("from transformers.models.llama.modeling_llama import LlamaRMSNorm", "LlamaRMSNorm"): (
        "LlamaRMSNorm",
        "modeling_llama.py",
        "llama",
    ),
    # `_import_structure["utils"] = [..., "GenerationMixin", ...]` in generation/__init__.py
    ("from transformers.generation import GenerationMixin", "GenerationMixin"): (
        "GenerationMixin",
        "utils.py",
        "generation",
    ),
    ("from transformers import GenerationMixin", "GenerationMixin"): (
        "GenerationMixin",
        "utils.py",
        "generation",
    ),
    # `from .modeling_llama import *` in models/llama/__init__.py, by its `__all__`
    ("from transformers.models.llama import LlamaPreTrainedModel", "LlamaPreTrainedModel"): (
        "LlamaPreTrainedModel",
        "modeling_llama.py",
        "llama",
    ),
    ("import transformers", "transformers.models.llama.LlamaPreTrainedModel"): (
        "LlamaPreTrainedModel",
        "modeling_llama.py",
        "llama",
    ),
    ("from transformers import LlamaForCausalLM", "LlamaForCausalLM"): (
        "LlamaForCausalLM",
        "modeling_llama.py",
        "llama",
    ),
}


def _resolved(folder: Path, imports: str, spelled: str):
    project = Project()
    sf = project.adopt(str(folder / "modeling_toy.py"), imports + "\n")
    return library.library_class(project, sf, spelled)


@pytest.mark.parametrize(("imports", "spelled"), INSTALLED, ids=[s for _, s in INSTALLED])
def test_installed_transformers_names_resolve_to_their_defining_file(tmp_path, imports, spelled):
    found = _resolved(tmp_path, imports, spelled)
    name, filename, folder = INSTALLED[(imports, spelled)]
    assert found is not None, (imports, spelled)
    assert (found.name, found.sf.name, Path(found.sf.path).parent.name) == (
        name,
        filename,
        folder,
    )


def test_a_name_a_module_keeps_out_of_its_all_is_no_star_export(tmp_path):
    # LlamaRMSNorm is defined in modeling_llama.py but not in its __all__: the package does
    # not serve it (Python raises ImportError), only the file itself does
    spelled = "LlamaRMSNorm"
    assert (
        _resolved(tmp_path, "from transformers.models.llama import LlamaRMSNorm", spelled) is None
    )


# a lazy package in the layout of transformers' own inits, with no TYPE_CHECKING imports
LAZY_INIT = """\
from typing import TYPE_CHECKING

_import_structure = {"modeling_base": ["BaseModel"], "data": []}

try:
    if not is_torch_available():
        raise OptionalDependencyNotAvailable()
except OptionalDependencyNotAvailable:
    _import_structure["utils.dummy_pt_objects"] = ["Conv1D", "Extended", "Added"]
else:
    _import_structure["pytorch_utils"] = ["Conv1D"]
    _import_structure["layers"] = ["Norm"]
    _import_structure["layers"].extend(["Extended"])
    _import_structure["layers"] += ["Added"]

if TYPE_CHECKING:
    pass
else:
    import sys

    sys.modules[__name__] = _LazyModule(__name__, globals()["__file__"], _import_structure)
"""

LAZY_FILES = {
    "__init__.py": LAZY_INIT,
    "modeling_base.py": "class BaseModel:\n    pass\n",
    "pytorch_utils.py": "class Conv1D:\n    pass\n",
    "layers.py": "".join(
        f"class {name}:\n    pass\n\n\n" for name in ("Norm", "Extended", "Added")
    ),
    "utils/__init__.py": "",
    "utils/dummy_pt_objects.py": (
        "class Conv1D(metaclass=DummyObject):\n    pass\n\n\n"
        "class Extended(metaclass=DummyObject):\n    pass\n\n\n"
        "class Added(metaclass=DummyObject):\n    pass\n"
    ),
}


@pytest.fixture
def lazy_transformers(tmp_path, monkeypatch) -> Path:
    """A stand-in transformers package read instead of the installed one."""
    root = tmp_path / "site" / "transformers"
    for name, text in LAZY_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    monkeypatch.setattr(library, "transformers_dir", lambda: str(root))
    return root


@pytest.mark.parametrize(
    ("spelled", "filename"),
    [
        ("BaseModel", "modeling_base.py"),  # an entry of the dict literal
        ("Conv1D", "pytorch_utils.py"),  # an item assigned, not the dummy stand-in's
        ("Norm", "layers.py"),
        ("Extended", "layers.py"),  # `.extend([...])`
        ("Added", "layers.py"),  # `+= [...]`
    ],
)
def test_names_only_the_lazy_import_structure_lists_resolve(
    tmp_path, lazy_transformers, spelled, filename
):
    found = _resolved(tmp_path, f"from transformers import {spelled}", spelled)
    assert found is not None and (found.name, found.sf.name) == (spelled, filename)
    attribute = _resolved(tmp_path, "import transformers", f"transformers.{spelled}")
    assert attribute is not None and attribute.sf.name == filename


def test_a_name_the_structure_does_not_list_is_no_class(tmp_path, lazy_transformers):
    assert _resolved(tmp_path, "from transformers import Missing", "Missing") is None


def test_resolving_through_the_packages_imports_neither_torch_nor_transformers(tmp_path):
    code = textwrap.dedent(
        f"""
        import json, sys
        from codegen.analyze.library_class import library_class
        from codegen.analyze.source import Project

        found = []
        for imports, spelled in {sorted(INSTALLED)!r}:
            project = Project()
            sf = project.adopt({str(tmp_path / "modeling_toy.py")!r}, imports + "\\n")
            cls = library_class(project, sf, spelled)
            found.append(cls.name if cls is not None else None)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
        print(json.dumps([found, loaded]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    found, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == [INSTALLED[key][0] for key in sorted(INSTALLED)]
    assert loaded == []
