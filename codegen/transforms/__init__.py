"""libcst transforms that turn a reference model package into a new one, one per file.

Each module defines one `Transform` subclass: its docstring says what it changes, its
`apply(package, **params)` edits the package's files, and the test beside it shows the code
before and after. The rule table (`rules/`) decides which transforms run, with which
parameters; `TRANSFORMS` maps the names the table uses to the classes.
"""
