"""The config field the FFN's activation is looked up by is read from the structure:
falcon's `get_activation(config.activation)` on a renamed copy whose field is `act_kind`
gives `ffn.activation_field == "act_kind"`, cited at that line; llama's
`ACT2FN[config.hidden_act]` gives hidden_act; bloom's gelu, written out in the code, none;
openai-gpt's model-local table (`ACT_FNS[config.afn]`), renamed with its field, gives the
field while the activation stays the function the table holds (gelu_new, the tanh form)."""

from __future__ import annotations

import re
from pathlib import Path

from analyze_helpers import rename_field, rename_model

from codegen.analyze.analysis import analyze


def test_renamed_copy_records_the_activation_field(tmp_path):
    copy, _ = rename_model("falcon", "zorblax", str(tmp_path))
    rename_field(copy, "activation", "act_kind")
    modeling = Path(copy)
    features = analyze(copy)
    assert features.ffn.activation == "gelu"
    assert features.ffn.activation_field == "act_kind"
    cite = features.evidence["ffn.activation_field"]
    assert cite.startswith("modeling_zorblax.py:"), cite
    line = modeling.read_text().splitlines()[int(cite.split(":")[1]) - 1]
    assert "get_activation(config.act_kind)" in line, line


def test_table_lookup_and_code_named_activations():
    assert analyze("llama").ffn.activation_field == "hidden_act"
    assert analyze("bloom").ffn.activation_field is None


def test_a_model_local_table_lookup_records_the_field(tmp_path):
    copy, _ = rename_model("openai-gpt", "zorblax", str(tmp_path))
    rename_field(copy, "afn", "act_kind")
    modeling = Path(copy)
    modeling.write_text(re.sub(r"\bACT_FNS\b", "NONLINEARITIES", modeling.read_text()))
    features = analyze(copy)
    assert features.ffn.activation == "gelu_new"
    assert features.ffn.activation_field == "act_kind"
    cite = features.evidence["ffn.activation_field"]
    assert cite.startswith("modeling_zorblax.py:"), cite
    line = modeling.read_text().splitlines()[int(cite.split(":")[1]) - 1]
    assert "NONLINEARITIES[config.act_kind]" in line, line
