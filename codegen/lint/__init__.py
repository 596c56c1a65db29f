"""`codegen lint`: static, import-free consistency checks of model registries.

Reads files with `ast` only (never torch, transformers, the models, or even libcst unless
`--fix` has work to do), so it can run on every commit:

    scope         what one run covers (defaults, --models/--target, [tool.codegen], PATHS)
    config        the [tool.codegen] table of pyproject.toml
    read          registry containers and module bindings, via ast
    resolve       module paths to files; ModelSpec(...) fields
    containers    duplicates (CG003) and sort order (CG005), for any container
    house         the house layout: CG001-CG008
    target_checks framework targets from codegen.targets
    findings      `file:line: CODE message` and the code catalogue
    fix           --fix: the codemods for fixable findings
    run           all checks of a scope, sorted
"""
