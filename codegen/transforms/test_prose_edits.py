"""drop_prose: the prose naming a removed part loses that part, or goes where nothing
else of it holds (module docstring paragraphs, comment blocks, trailing comments); the
summary line and what names nothing stay."""

import re

from codegen.transforms._prose_edits import drop_prose, without_parentheses
from codegen.transforms.testing import package_of

BEFORE = '''"""The plan over a DeviceMesh (`tp`, `dp_shard`, `ep`).

Dense SwiGLUs are column-wise. FSDP2 shards each block.

MoE layers: the stacked routed experts are split over `ep` by expert.
"""

# the router (and its correction bias) first,
# then the experts
PLAN = {"gate": "replicate"}  # the experts' own
OTHER = 1  # a plain comment


def parallelize(model, mesh):
    """Shard `model` (dims `tp`, `dp_shard`, `ep`; absent = 1)."""
'''

AFTER = '''"""The plan over a DeviceMesh (`tp`, `dp_shard`).

Dense SwiGLUs are column-wise. FSDP2 shards each block.
"""

PLAN = {"gate": "replicate"}
OTHER = 1  # a plain comment


def parallelize(model, mesh):
    """Shard `model` (dims `tp`, `dp_shard`; absent = 1)."""
'''


def test_prose_naming_the_removed_part_goes():
    package = package_of({"parallelize.py": BEFORE})
    drop_prose(package, "parallelize.py", r"[Ee]xperts?\b|[Rr]outer|\bMoE\b|`ep`")
    assert package.render()["parallelize.py"] == AFTER


def test_a_parenthesis_naming_it_goes_and_the_sentence_stays():
    words = re.compile("correction bias")
    text = "The router (with its\ncorrection bias) is replicated."
    assert without_parentheses(text, words) == "The router is replicated."
    assert without_parentheses("kept (as is)", words) == "kept (as is)"


def test_a_comment_loses_only_its_parenthesis():
    source = "# MoE layers: router (and its correction bias), experts stacked\nX = 1\n"
    package = package_of({"state_dict_adapter.py": source})
    drop_prose(package, "state_dict_adapter.py", "correction bias")
    assert package.render()["state_dict_adapter.py"] == (
        "# MoE layers: router, experts stacked\nX = 1\n"
    )
