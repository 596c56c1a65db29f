"""Feature values codegen recognises but no reference or rule realises yet, and why.

`codegen analyze` lists a target with one of these under `unsupported`, and `codegen
scaffold` stops before writing anything. A test keeps this table honest: every value the
analyzer can emit is handled by a reference, a rule, or a row here, and a row disappears
once a rule covers its value.
"""

UNSUPPORTED: dict[tuple[str, object], str] = {
    ("rope.type", "longrope"): (
        "two frequency tables switched by sequence length (phi3 long context): no rule yet"
    ),
    ("rope.type", "none"): "positionless or learned absolute positions: no reference uses them",
    ("rope.type", "other"): "a position encoding the analyzer does not recognise",
    ("ffn.kind", "other"): "an FFN activation pattern the analyzer does not recognise",
    ("moe.router", "other"): "a routing function the analyzer does not recognise",
    ("moe.expert_layout", "fused"): (
        "experts stored fused on disk (one 3-D tensor per projection): needs an adapter "
        "conversion the table-driven base does not express"
    ),
    ("moe.expert_bias", True): "per-expert biases: no MoE transform adds them yet",
}
