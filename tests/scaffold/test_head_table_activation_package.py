"""A remote-code copy of modernbert-decoder whose prediction head picks its activation from
a table of its own file by `config.classifier_activation` (a GELU and a swish written out)
scaffolds a package that verifies and pins that field, as for
`ACT2FN[config.classifier_activation]`: another value of it is refused, not run as GELU."""

from __future__ import annotations

import re

OWN_GELU = (
    "import math\n\n\ndef own_gelu(x):\n"
    "    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))\n\n\n"
    "def own_swish(x):\n    return x * torch.sigmoid(x)\n\n\n"
    'OWN_ACTS = {"gelu": own_gelu, "silu": own_swish}\n\n\n'
)


def test_a_head_activation_picked_from_a_local_table_scaffolds_pinned_and_verifies(tmp_path):
    from codegen.scaffold.testing import plan_folder, verify_toy, write_planned
    from codegen.verify.remote import load_remote, remote_toy_config
    from codegen.verify.remote_fixture import remote_folder
    from codegen.verify.run import Case

    folder = remote_folder("modernbert-decoder", tmp_path / "hub", "plimbo")
    modeling = next(folder.glob("modeling_*.py"))
    text = modeling.read_text()
    lookup = "ACT2FN[config.classifier_activation]"
    assert text.count(lookup) == 1
    text = text.replace(lookup, "OWN_ACTS[config.classifier_activation]")
    first = re.search(r"(?m)^(@|class )", text).start()
    modeling.write_text(text[:first] + OWN_GELU + text[first:])

    target, plan = plan_folder(folder)
    head = target.features.head
    assert (head.transform_activation, head.transform_activation_field) == (
        "gelu",
        "classifier_activation",
    )
    models, name = write_planned(tmp_path / "models", (target, plan))
    assert '"classifier_activation": "gelu"' in (models / name / "args.py").read_text()
    remote = load_remote(folder, True)
    config = remote_toy_config(remote)
    result = verify_toy(models, name, case=Case(name, config), gradients=False)[0]
    assert result.status == "pass", result.to_json()
    other = remote_toy_config(remote)
    other.classifier_activation = "silu"
    refused = verify_toy(models, name, case=Case(name + "+silu", other), gradients=False)[0]
    said = f"{refused.to_json().get('refused')} {refused.to_json().get('error')}"
    assert "classifier_activation='silu' is not supported" in said, said
