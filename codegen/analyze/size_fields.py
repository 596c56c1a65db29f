"""Which config field a structural size is, as the modeling code passes it to a constructor.

A package reads its sizes by their usual names (`hf_config.vocab_size`); a config may hold
them under others (a remote-code config's `n_tokens`), or answer the usual name for another
part (whisper's `num_hidden_layers` is its `encoder_layers`, while its causal-LM decoder
builds `config.decoder_layers` layers). The interpreter tags an int read from a config with
its field while the code passes it on as it is, or multiplies two such
(`evaluate.ConfigInt`, under the name the code reads, or the one usual name the config's
`attribute_map` answers with that field: ctrl's `n_layer` is its `num_hidden_layers`); these
read the tag off the evaluated constructor arguments. A size the code derives, chooses or
pads names no field: the package's read stands.
"""

from __future__ import annotations

import libcst as cst

from codegen.analyze.evaluate import ConfigInt, ModuleListRec, ModuleRec, read_field


def rows_field(table: ModuleRec | None) -> str | None:
    """The config field an `nn.Embedding`'s rows are (its first argument), else None."""
    if not isinstance(table, ModuleRec) or table.kind != "Embedding":
        return None
    rows = table.args[0] if table.args else table.kwargs.get("num_embeddings")
    return read_field(rows)


def count_field(stack) -> str | None:
    """The config field a layer list is counted by (`range(config.X)`), else None."""
    return stack.count_field if isinstance(stack, ModuleListRec) else None


def head_fields(heads, kv_heads, head_dim, q_out, k_out, same=False) -> tuple[str | None, ...]:
    """(heads, kv heads, head width) fields: each count read as it is (`self.num_heads =
    config.n_heads`), else the other factor of a projection's width that is two fields'
    product with the head width's (`nn.Linear(d, config.n_heads * self.head_dim)`). A head
    width kept in no attribute is the one factor the q and k widths share; `same` (q and k
    built as wide by one expression, `same_width`) makes the kv heads the heads."""
    dim = read_field(head_dim) or _shared(q_out, k_out)
    count = read_field(heads) or _factor(q_out, dim)
    kv = read_field(kv_heads) or _factor(k_out, dim) or (count if same else None)
    return count, kv, dim


def same_width(q_proj: ModuleRec | None, k_proj: ModuleRec | None) -> bool:
    """q and k projections built with one expression for their widths (whisper's
    `nn.Linear(embed_dim, embed_dim)` both): as many kv heads as heads, whatever the config."""
    q_out, k_out = (_out_features(rec) for rec in (q_proj, k_proj))
    return q_out is not None and k_out is not None and q_out.deep_equals(k_out)


def _out_features(rec: ModuleRec | None) -> cst.BaseExpression | None:
    """The `out` argument node of a `nn.Linear(in, out)` call, else None."""
    call = rec.site.node if isinstance(rec, ModuleRec) and rec.site is not None else None
    if not isinstance(call, cst.Call) or rec.kind != "Linear" or any(a.star for a in call.args):
        return None
    keyed = [a.value for a in call.args if a.keyword and a.keyword.value == "out_features"]
    positional = [a.value for a in call.args if a.keyword is None]
    out = keyed[0] if keyed else positional[1] if len(positional) > 1 else None
    return out


def _shared(q_out, k_out) -> str | None:
    """The one field two two-field products share, where the others differ."""
    q, k = (
        set(getattr(p, "fields", ())) if isinstance(p, ConfigInt) else set() for p in (q_out, k_out)
    )
    both = q & k
    return next(iter(both)) if len(q) == len(k) == 2 and len(both) == 1 else None


def _factor(product, known: str | None) -> str | None:
    fields = product.fields if isinstance(product, ConfigInt) else ()
    if known is None or len(fields) != 2 or known not in fields:
        return None
    other = [f for f in fields if f != known]
    return other[0] if len(other) == 1 else None
