"""atom: ROCm ATOM, architectures mapped to dotted class paths.

`support_model_arch_dict = {"Arch": "atom.models.<m>.Arch", ...}` in the model runner;
values are sometimes wrapped in parentheses across lines. The file is hand-grouped (not
sorted), so new entries land after their family.
"""

from codegen.targets.model import Registry, Target

TARGET = Target(
    name="atom",
    description="ROCm ATOM: support_model_arch_dict (arch -> dotted class path)",
    registries=(
        Registry(
            files=("atom/model_engine/model_runner.py",),
            container="support_model_arch_dict",
            key="{arch}",
            values=("atom.models.{name}.{arch}",),
            resolve="dotted",
        ),
    ),
)
