"""Give the output head BERT's prediction transform: dense, activation, norm, then the
vocabulary projection (its bias possibly stored under another key)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import (
    activation_of,
    adapter_rows,
    pin_setting,
    rewrite_adapter,
)
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ScopedTransformer,
    assigns,
    code_of,
    expression,
    run,
)
from codegen.transforms.embedding_module import norm_constructor, with_width
from codegen.transforms.head_bias import fix_tied_head

DENSE = "self.head_dense = nn.Linear(args.dim, args.dim{bias})  # the head's own transform"
WIDTH_FIELD = "head_width: int = 768  # width of the prediction head (dense out, norm, output in)"


class HeadTransform(Transform):
    """`Model.forward` returns `self.output(self.head_norm(act(self.head_dense(h))))`: a
    dense layer (`dim -> dim`, biased when `dense_bias`), the HF activation `activation`,
    a norm built as the model's others. The adapter maps `dense` and `norm` (HF paths), the
    head weight from `projection` and its bias from `bias_key`; a bias HF ties to a
    parameter of its own (BERT's `cls.predictions.bias`) is only shared when the head is
    tied, so the package fixes `tie_word_embeddings` (an untied checkpoint carries an
    unused copy of it). `activation_field`, the config field HF looks the activation up by
    (ModernBERT-decoder's `classifier_activation`), is pinned to `activation`: the package
    hard-codes it, so a config naming another one is refused rather than run differently."""

    name = "head_transform"

    def apply(
        self,
        package,
        features=None,
        *,
        dense: str,
        norm: str,
        projection: str,
        activation: str,
        dense_bias: bool = True,
        bias_key: str = "",
        width: str = "",
        activation_field: str = "",
    ) -> None:
        if not (dense and norm and projection):
            raise EditError("a prediction head needs the HF paths of its dense, norm, projection")
        try:
            activation_of(activation, "x")
        except ValueError as err:
            raise EditError(str(err)) from err
        built = norm_constructor(package.module("model.py"))
        layers = DENSE.format(bias="" if dense_bias else ", bias=False")
        if width:  # the head's own width (RemBERT's output_embedding_size)
            edits.add_args_field(package, WIDTH_FIELD, f"head_width=hf_config.{width}")
            layers = layers.replace(
                "nn.Linear(args.dim, args.dim", "nn.Linear(args.dim, args.head_width"
            )
            built = code_of(with_width(expression(built), "args.head_width"))
            narrow = _OutputInput()
            run(package, "model.py", narrow)
            if narrow.hits != 1:
                raise EditError(
                    "model.py: Model.__init__ builds no `self.output = nn.Linear(args.dim, ...)`"
                )
        run(
            package,
            "model.py",
            InsertStatements(
                "Model",
                "__init__",
                assigns("self.output"),
                f"{layers}\nself.head_norm = {built}",
                before=True,
            ),
        )
        wrap = _WrapHeadInput(activation)
        run(package, "model.py", wrap)
        if wrap.hits != 1:
            raise EditError("model.py: Model.forward has no single `self.output(...)` call")
        keys = {"output.weight": f"{projection}.weight"}
        if bias_key:
            keys["output.bias"] = bias_key
        for house in keys:
            if not any(value == house for _, value in adapter_rows(package)):
                raise EditError(f"state_dict_adapter.py has no row for {house}")
        rewrite_adapter(package, lambda hf, value: [(keys.get(value, hf), value)])
        rows = [(f"{dense}.weight", "head_dense.weight")]
        rows += [(f"{dense}.bias", "head_dense.bias")] if dense_bias else []
        rows += [(f"{norm}.weight", "head_norm.weight"), (f"{norm}.bias", "head_norm.bias")]
        edits.insert_rows_after(package, "output.weight", rows)
        if bias_key and bias_key != f"{projection}.bias":
            fix_tied_head(package)
        if activation_field:
            pin_setting(package, activation_field, activation)


class _WrapHeadInput(ScopedTransformer):
    """`self.output(x)` -> `self.output(self.head_norm(act(self.head_dense(x))))`."""

    def __init__(self, activation: str):
        super().__init__("Model", "forward")
        self.activation = activation

    def leave_Call(self, original, updated):
        if not (
            self.inside
            and m.matches(updated.func, m.Attribute(value=m.Name("self"), attr=m.Name("output")))
            and len(updated.args) == 1
        ):
            return updated
        self.hits += 1
        dense = f"self.head_dense({code_of(updated.args[0].value)})"
        head_input = cst.Call(
            func=expression("self.head_norm"), args=[cst.Arg(activation_of(self.activation, dense))]
        )
        return updated.with_changes(args=[updated.args[0].with_changes(value=head_input)])


class _OutputInput(ScopedTransformer):
    """`self.output = nn.Linear(args.dim, ...)` takes `args.head_width` features."""

    def __init__(self):
        super().__init__("Model", "__init__")

    def leave_Assign(self, original, updated):
        call = updated.value
        if not (
            self.inside
            and m.matches(updated.targets[0].target, m.Attribute(m.Name("self"), m.Name("output")))
            and m.matches(call, m.Call(args=[m.Arg(_DIM), m.ZeroOrMore()]))
        ):
            return updated
        self.hits += 1
        first = call.args[0].with_changes(value=expression("args.head_width"))
        return updated.with_changes(value=call.with_changes(args=[first, *call.args[1:]]))


_DIM = m.Attribute(value=m.Name("args"), attr=m.Name("dim"))
