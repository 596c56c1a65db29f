"""What a framework target is: data describing its registry files, not code that edits them.

Why data: adding a framework should mean writing down where its registries are and what an
entry looks like, then letting the codemods (which read the real shape from the file) do
the editing. Reading a target answers "what does `codegen register --target X` touch?".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Registry:
    """One container a framework registers models in.

    `files` are candidate paths relative to the repository root; the first one that exists
    and holds the container is used (layouts move between releases); an `optional` registry
    whose files are all absent is skipped (it appeared in a later release). `key` and
    `values` are templates over the variables of `codegen.targets.variables`; with
    `expression`, each value is Python source (`_HfExamplesInfo("{example}")`), not a string.

    `resolve` says how an entry names the code it registers, the way the framework itself
    reads it: "colon" (`mod:attr`), "dotted" (`mod.attr`), "module_class" (`(module,
    class)`; the module is relative to `module_root` unless it starts with one of the
    `absolute` prefixes, as vLLM's `("vllm.models.x", ...)` entries do) or None (not
    checked). `alternatives` are other value templates for the layouts the framework also
    reads: the first whose module file exists is written. `requires` is, for registries of
    class names, the file (relative to the registry file's folder) that must exist before
    registering. `imports` are the import statements an entry needs (a value that is a
    class, not a string).
    """

    files: tuple[str, ...]
    container: str
    key: str
    values: tuple[str, ...] = ()
    alternatives: tuple[tuple[str, ...], ...] = ()
    section: str | None = None
    resolve: str | None = None
    module_root: str = ""
    absolute: tuple[str, ...] = ()
    requires: str | None = None
    imports: tuple[str, ...] = ()
    expression: bool = False
    optional: bool = False
    note: str = ""

    def reference(self, values: Sequence[str]) -> tuple[str, str] | None:
        """(module, attribute) an entry's values name under `resolve`, or None if the values
        do not have the shape `resolve` expects (or nothing is resolved)."""
        if self.resolve == "module_class" and len(values) >= 2:
            module = values[0]
            if self.module_root and not module.startswith(self.absolute):
                module = f"{self.module_root}.{module}"
            return module, values[1]
        if not values:
            return None
        if self.resolve == "colon" and values[0].count(":") == 1:
            module, attr = values[0].split(":")
            return module, attr
        if self.resolve == "dotted" and "." in values[0]:
            module, _, attr = values[0].rpartition(".")
            return module, attr
        return None


@dataclass(frozen=True)
class Target:
    """A framework layout: the registries a new model is added to, in order.

    `models_dir` (relative to the repository) holds one package per model, each marked by
    `marker`; `lint` reports packages that no registry entry names. `defaults` give
    template variables a value unless the user sets one (`--set KEY=VALUE`).
    """

    name: str
    description: str
    registries: tuple[Registry, ...]
    models_dir: str | None = None
    marker: str = "spec.py"
    defaults: dict[str, str] = field(default_factory=dict)
