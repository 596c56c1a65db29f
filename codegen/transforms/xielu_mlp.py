"""Make the dense feed-forward an ungated MLP with the xIELU activation (learned slopes)."""

from __future__ import annotations

import libcst as cst

from codegen.transforms._attention_edits import insert_rows_after
from codegen.transforms._ffn_edits import (
    EditCalls,
    InsertClassBefore,
    SetClassDocstring,
    adapter_rows,
    retarget_activation_guard,
    set_field_comment,
    set_fixed_setting,
)
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditError, InsertStatements, assigns, expression, run
from codegen.transforms.ffn_kind import drop_up_projection

# HF XIELUActivation's Python path (the one it runs off CUDA), step for step. The slopes are
# stored through softplus (a checkpoint holds log(expm1(a))); beta and eps are persistent
# buffers, so they are checkpoint keys too. HF's _init_weights leaves the module as built,
# so init_weights restores the built values (the lifecycle table would draw and zero them).
XIELU = '''
class XIELU(nn.Module):
    """xIELU: x > 0: a_p * x^2 + beta * x; else (expm1(min(x, eps)) - x) * a_n + beta * x,
    with a_p = softplus(alpha_p) and a_n = beta + softplus(alpha_n) learned."""

    def __init__(self, alpha_p: float = 0.8, alpha_n: float = 0.8, beta: float = 0.5, eps=-1e-6):
        super().__init__()
        self.initial = (alpha_p, alpha_n, beta, eps)
        self.alpha_p = nn.Parameter(torch.empty(1))
        self.alpha_n = nn.Parameter(torch.empty(1))
        self.register_buffer("beta", torch.empty(()))
        self.register_buffer("eps", torch.empty(()))
        with torch.no_grad():
            self.init_parameters(0.0)

    def init_parameters(self, std: float) -> None:
        alpha_p, alpha_n, beta, eps = self.initial
        # as HF computes them, in float32 (on the CPU: the model may be on the meta device)
        self.alpha_p.fill_(torch.tensor(alpha_p, device="cpu").expm1().log().item())
        self.alpha_n.fill_(torch.tensor(alpha_n - beta, device="cpu").expm1().log().item())
        self.beta.fill_(beta)
        self.eps.fill_(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha_p = F.softplus(self.alpha_p)
        alpha_n = self.beta + F.softplus(self.alpha_n)
        linear = self.beta * x  # both branches add it: computed once
        negative = (torch.expm1(torch.min(x, self.eps)) - x) * alpha_n + linear
        return torch.where(x > 0, alpha_p * x * x + linear, negative)
'''

ACT = "self.act = XIELU()  # slopes learned per layer (checkpoint: act_fn.*)"
_TENSORS = ("alpha_p", "alpha_n", "beta", "eps")
_DOWN = "layers.{}.feed_forward.w2.weight"


class SetXieluMlp(Transform):
    """FeedForward becomes `w2(xielu(w1(x)))`: w3 goes (w1 reads the checkpoint's up
    projection), the activation is the `XIELU` module above, whose tensors map from the
    checkpoint's `<mlp>.act_fn.*`. The reference's `hidden_act` setting becomes "xielu"."""

    name = "set_xielu_mlp"

    def apply(self, package, features=None) -> None:
        drop_up_projection(package)
        act = expression("self.act")
        run(
            package,
            "model.py",
            EditCalls(
                "FeedForward",
                "forward",
                "F.silu",
                lambda original, updated: cst.Call(func=act, args=updated.args),
            ),
        )
        init = ("FeedForward", "__init__")
        run(package, "model.py", InsertStatements(*init, assigns("self.w2"), ACT))
        run(package, "model.py", InsertClassBefore(XIELU))
        run(package, "model.py", SetClassDocstring("FeedForward", lambda old: _DOCSTRING))
        down = [hf for hf, house in adapter_rows(package) if house == _DOWN]
        if not down:
            raise EditError(f"state_dict_adapter.py has no row for {_DOWN}")
        mlp = down[0].rsplit(".", 2)[0]
        rows = [(f"{mlp}.act_fn.{t}", f"layers.{{}}.feed_forward.act.{t}") for t in _TENSORS]
        insert_rows_after(package, _DOWN, rows)
        set_fixed_setting(package, "hidden_act", "xielu")
        retarget_activation_guard(package, "xielu")
        set_field_comment(package, "hidden_dim", "xIELU MLP inner size")


_DOCSTRING = "xIELU MLP: w2(xielu(w1(x))), the activation's slopes learned per layer."
