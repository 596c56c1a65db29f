"""Registry codemods: insert one entry into a registry container, keeping every other byte.

One codemod per file, each documented by its docstring and tested beside it:

    dict_entry      "key": value in a dict literal (annotated, ClassVar, NAME.update({...}))
    pair_entry      (key, value, ...) in OrderedDict([...]) / dict([...])
    member          a member of frozenset({...}), set, tuple, list
    literal_member  a member of Literal[...]
    import_name     a name in a side-effect `from PKG import (...)` list
    import_line     a side-effect `from PKG.m import spec as m_spec  # noqa: F401` line
    elif_branch     a branch of an `if NAME == "...": ... else: raise` chain

Shared helpers: `selector` (the CONTAINER grammar), `locate` / `import_sites` (finding the
container), `order` (sorted / family / end), `shape` (entry shape from the neighbours),
`layout` / `style` (line breaks as the formatter would, at the repository's line length),
`imports` (the import a class value or copied branch needs), `sequence` (splicing into
bracketed sequences), `base` / `bracketed` (the insert plan), `rename` (model-name
swapping), `reorder` (`lint --fix` for CG005), `files` (parse, diff, atomic write). The
entry point is `codegen.codemods.add.add_entry`.

This package's `__init__` imports nothing, so `codegen lint` can use `selector` and `order`
without loading libcst.
"""
