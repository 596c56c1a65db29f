"""Side tables of an embeddings module (RoCBert's glyph shape and pronunciation): tables
indexed by ids of their own, whose rows are concatenated to the token rows and mapped back
to `dim` before the token-type and position rows are added."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    assigns,
    expression,
    is_name,
    run,
)
from codegen.transforms.embedding_module import _assigns_tokens, _embedding_target

PROJECTION = "concat_proj"

SIDE_ROWS = '''
def side_rows(table: nn.Embedding, ids: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
    """`table`'s rows for `ids`; where the caller gives no ids, the zeros HF makes then: row
    0 for every token (looked up, so a padding row 0 learns nothing, as in HF)."""
    return table(torch.zeros_like(tokens) if ids is None else ids)
'''


def house_name(hf_path: str) -> str:
    """The house attribute of a side table: its HF module's own name (`shape_embed`)."""
    return hf_path.rsplit(".", 1)[-1]


class SideTables(Transform):
    """Side tables concatenated to the token rows and mapped back to `dim` (RoCBert): each
    table of `tables` ((HF path, rows field, width field, switch field, ids input), in HF's
    concat order) becomes `Model.<its HF name>`, and `concat_proj` (HF's `projection`) maps
    [token rows | each enabled table's rows] to `dim` right after the token lookup. The ids
    come in as optional `Model.forward` inputs under HF's names; without them a table reads
    its row 0, as HF does. A table's `switch` field leaves it out of the concatenation (its
    weights stay); with `switch` (the projection's own field) off there is no projection:
    the tables are summed and normed as BERT's, and the rows of the ids given are averaged
    with that sum after the norm, as HF does (none given: unchanged)."""

    name = "side_tables"

    def apply(
        self, package, features=None, *, tables=(), projection: str = "", switch: str = ""
    ) -> None:
        if not tables or not projection:
            raise EditError("side tables need their tables and the projection's HF path")
        forward = edits.find_method(package.module("model.py"), "Model", "forward")
        hidden = _embedding_target(forward)
        _add_fields(package, tables, switch)
        _build(package, tables, switch)
        _concatenate(package, tables, hidden, switch)
        if switch:
            _average(package, tables, hidden)
        _inputs(package, tables, switch)
        rows = [(f"{path}.weight", f"{house_name(path)}.weight") for path, *_ in tables]
        rows += [(f"{projection}.{p}", f"{PROJECTION}.{p}") for p in ("weight", "bias")]
        edits.insert_rows_after(package, "tok_embeddings.weight", rows)


def _add_fields(package, tables, switch: str) -> None:
    for path, rows, width, enabled, _ in tables:
        table = house_name(path)
        edits.add_args_field(
            package,
            f"{rows}: int = 1  # rows of the {table} side table",
            f"{rows}=hf_config.{rows}",
        )
        edits.add_args_field(
            package,
            f"{width}: int = 1  # width of the {table} side table",
            f"{width}=hf_config.{width}",
        )
        if enabled:
            edits.add_args_field(
                package,
                f"{enabled}: bool = True  # the {table} rows join the embeddings",
                f"{enabled}=hf_config.{enabled}",
            )
    if switch:
        edits.add_args_field(
            package,
            f"{switch}: bool = True  # side rows concatenated and mapped to dim (else averaged)",
            f"{switch}=hf_config.{switch}",
        )


def _build(package, tables, switch: str) -> None:
    lines = [
        f"self.{house_name(path)} = nn.Embedding("
        f"args.{rows}, args.{width}, padding_idx=args.pad_token_id)"
        for path, rows, width, _, _ in tables
    ]
    inputs = " + ".join(
        ["args.dim"]
        + [f"args.{width} * args.{on}" if on else f"args.{width}" for _, _, width, on, _ in tables]
    )
    built = f"nn.Linear({inputs}, args.dim)"
    lines.append("# the token rows and the side tables' rows, concatenated, mapped back to dim")
    lines.append(
        f"self.{PROJECTION} = {built} if args.{switch} else None"
        if switch
        else f"self.{PROJECTION} = {built}"
    )
    run(
        package,
        "model.py",
        InsertStatements("Model", "__init__", assigns("self.tok_embeddings"), "\n".join(lines)),
    )


def _concatenate(package, tables, hidden: str, switch: str) -> None:
    parts = [hidden]
    appends = []
    for path, _, _, on, ids in tables:
        rows = f"side_rows(self.{house_name(path)}, {ids}, tokens)"
        if on:
            appends.append(f"if self.args.{on}:\n    parts.append({rows})")
        else:
            parts.append(rows)
    body = f"parts = [{', '.join(parts)}]\n" + "\n".join(appends) + "\n"
    body += f"{hidden} = self.{PROJECTION}(torch.cat(parts, dim=-1))"
    if switch:
        body = f"if self.{PROJECTION} is not None:\n" + _indent(body)
    if "side_rows" not in package.render()["model.py"]:
        edits.insert_definition(package, "model.py", SIDE_ROWS.strip(), before="Model")
    run(package, "model.py", InsertStatements("Model", "forward", _assigns_tokens, body))


def _average(package, tables, hidden: str) -> None:
    """Without the projection: the rows of the ids given averaged with the normed sum."""
    lines = ["count = 1"]
    for path, _, _, on, ids in tables:
        test = f"self.args.{on} and {ids} is not None" if on else f"{ids} is not None"
        lines.append(
            f"if {test}:\n    {hidden} = {hidden} + self.{house_name(path)}({ids})\n    count += 1"
        )
    lines.append(f"{hidden} = {hidden} / count")
    lines[0] += "  # the normed sum and the side rows of the ids given, averaged"
    body = f"if self.{PROJECTION} is None:\n" + _indent("\n".join(lines))
    run(
        package,
        "model.py",
        InsertStatements("Model", "forward", _layer_loop, body, before=True),
    )


def _layer_loop(statement: cst.CSTNode) -> bool:
    return isinstance(statement, cst.For) and is_name(statement.iter, "self.layers")


def _inputs(package, tables, switch: str) -> None:
    """The ids as optional forward inputs (HF's names), documented; packed documents take
    none (their per-document calls pass the tokens alone)."""
    names = [ids for *_, ids in tables]

    def add(params):
        return [
            *params,
            *(
                cst.Param(
                    cst.Name(name),
                    annotation=cst.Annotation(expression("torch.Tensor | None")),
                    default=cst.Name("None"),
                )
                for name in names
            ),
        ]

    run(package, "model.py", edits._EditParams("Model", "forward", add))
    given = " or ".join(f"{name} is not None" for name in names)
    guard = (
        f"if cu_seqlens is not None and ({given}):\n"
        '    raise NotImplementedError("side-table ids with packed documents (cu_seqlens)")'
    )
    run(
        package,
        "model.py",
        InsertStatements("Model", "forward", _cu_seqlens_branch, guard, before=True),
    )
    listed = ", ".join(f"`{name}`" for name in names)
    unset = (
        f"a table whose ids are None reads its row 0 (what HF does without them) when the"
        f" side rows are concatenated (`{switch}`), and is left out when they are averaged"
        if switch
        else "a table whose ids are None reads its row 0 for every token, as HF does"
    )
    paragraph = (
        f"{listed}: ids of the side tables ({', '.join(house_name(t[0]) for t in tables)}),"
        f" shaped as `tokens`, as the tokenizer gives them beside the token ids; {unset}."
    )
    run(package, "model.py", _Docstring(paragraph))


def _cu_seqlens_branch(statement: cst.CSTNode) -> bool:
    """`if cu_seqlens is not None: return forward_packed(...)`."""
    return isinstance(statement, cst.If) and bool(m.findall(statement.test, m.Name("cu_seqlens")))


def _indent(code: str) -> str:
    return "\n".join(("    " + line) if line else line for line in code.splitlines())


class _Docstring(cst.CSTTransformer):
    """Append a paragraph to `Model.forward`'s docstring (one is added if it has none)."""

    def __init__(self, paragraph: str):
        super().__init__()
        self.paragraph = paragraph
        self.cls: list[str] = []
        self.hits = 0

    def visit_ClassDef(self, node):
        self.cls.append(node.name.value)

    def leave_ClassDef(self, original, updated):
        self.cls.pop()
        return updated

    def leave_FunctionDef(self, original, updated):
        if self.cls[-1:] != ["Model"] or original.name.value != "forward":
            return updated
        self.hits += 1
        body = list(updated.body.body)
        first = body[0] if body else None
        text = ""
        if (
            isinstance(first, cst.SimpleStatementLine)
            and isinstance(first.body[0], cst.Expr)
            and isinstance(first.body[0].value, cst.SimpleString)
        ):
            text = first.body[0].value.evaluated_value.strip()
            body = body[1:]
        doc = (text + "\n\n        " if text else "") + _wrap(self.paragraph)
        new = cst.parse_statement(f'"""{doc}"""\n')
        return updated.with_changes(body=updated.body.with_changes(body=[new, *body]))


def _wrap(text: str, width: int = 88 - 8) -> str:
    import textwrap

    lines = textwrap.wrap(text, width)
    return "\n        ".join(lines)
