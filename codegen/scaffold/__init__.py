"""`codegen scaffold`: a reference package plus the rule-selected transforms -> a new package.

plan (features -> reference + ordered rules) -> source (the reference's files as libcst
modules) -> transforms (one libcst edit per rule) -> tidy (unused imports, ruff format) ->
write (atomic, never over an existing package without --force) -> register.
"""
