"""RenameModel: before/after on a spec.py."""

from codegen.transforms.rename_model import RenameModel
from codegen.transforms.testing import package_of

BEFORE = '''"""The llama ModelSpec."""

SPEC = ModelSpec(
    name="llama",
    model=Model,
    supported_model_types=frozenset({"llama"}),
)
'''

AFTER = '''"""The llama ModelSpec."""

SPEC = ModelSpec(
    name="mistral",
    model=Model,
    supported_model_types=frozenset({"ministral", "mistral"}),
)
'''


def test_spec_names_the_package_and_its_model_types():
    package = package_of({"spec.py": BEFORE})
    RenameModel().apply(package, name="mistral", model_types=["mistral", "ministral"], title="x")
    assert package.render()["spec.py"] == AFTER  # the docstring is retarget_text's
    assert package.name == "mistral"
