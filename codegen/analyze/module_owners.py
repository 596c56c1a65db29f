"""The modules a module record was built inside, innermost first.

A norm built in a decoder layer's `__init__` from a parameter of that `__init__` takes what
the layer's construction call passes: that call is the owner's site. Read from the model's
module tree (`walk_tree` paths), so each instance has its own owners: two layers of one
class built by different calls stay apart.
"""

from __future__ import annotations

from codegen.analyze.evaluate import ModuleRec
from codegen.analyze.model import walk_tree


def owners(ctx, rec: ModuleRec) -> tuple[ModuleRec, ...]:
    """The module records holding `rec`, its direct owner first, the model's entry last;
    () for the entry itself or a record the tree does not hold."""
    table = ctx.memo(("module_owners",), lambda: _owner_table(ctx.model.entry))
    chain: list[ModuleRec] = []
    current = table.get(id(rec))
    while current is not None and not any(current is seen for seen in chain):
        chain.append(current)
        current = table.get(id(current))
    return tuple(chain)


def _owner_table(entry) -> dict[int, ModuleRec]:
    """id(record) -> the nearest module record above it (lists are passed through)."""
    by_path = dict(walk_tree(entry))
    table: dict[int, ModuleRec] = {}
    for path, rec in by_path.items():
        if not path or not isinstance(rec, ModuleRec):
            continue
        parent = path
        while parent:
            parent = parent.rpartition(".")[0]
            above = by_path.get(parent)
            if isinstance(above, ModuleRec):
                table[id(rec)] = above
                break
    return table
