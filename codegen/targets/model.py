"""What a framework target is: data describing its registry files, not code that edits them.

Why data: adding a framework should mean writing down where its registries are and what an
entry looks like, then letting the codemods (which read the real shape from the file) do
the editing. Reading a target answers "what does `codegen register --target X` touch?".
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Registry:
    """One container a framework registers models in.

    `files` are candidate paths relative to the repository root; the first one that exists
    and holds the container is used (layouts move between releases). `key` and `values` are
    templates over the variables of `codegen.targets.variables`. `resolve` says how `lint`
    maps an entry to the code it names: "colon" (`mod:attr`), "dotted" (`mod.attr`),
    "module_class" (`(module, class)`, relative to `module_root`) or None (not checked).
    """

    files: tuple[str, ...]
    container: str
    key: str
    values: tuple[str, ...] = ()
    section: str | None = None
    resolve: str | None = None
    module_root: str = ""
    note: str = ""


@dataclass(frozen=True)
class Target:
    """A framework layout: the registries a new model is added to, in order.

    `models_dir` (relative to the repository) holds one package per model, each marked by
    `marker`; `lint` reports packages that no registry entry names.
    """

    name: str
    description: str
    registries: tuple[Registry, ...]
    models_dir: str | None = None
    marker: str = "spec.py"
    defaults: dict[str, str] = field(default_factory=dict)
