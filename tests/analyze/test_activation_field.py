"""The config field the FFN's activation is looked up by is read from the structure:
falcon's `get_activation(config.activation)` on a renamed copy whose field is `act_kind`
gives `ffn.activation_field == "act_kind"`, cited at that line; llama's
`ACT2FN[config.hidden_act]` gives hidden_act; bloom's gelu, written out in the code, none;
openai-gpt's model-local table (`ACT_FNS[config.afn]`), renamed with its field, gives the
field while the activation stays the function the table holds (gelu_new, the tanh form), and
so does every other kind of entry the table may hold: the module instance `nn.ReLU()`
(afn="relu"), a function or a class instance of the analysed file."""

from __future__ import annotations

import json
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


def _config(tmp_path, **values) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    return str(path)


def _cited_line(features, path: Path) -> str:
    cite = features.evidence["ffn.activation_field"]
    assert cite.startswith(f"{path.name}:"), cite
    return path.read_text().splitlines()[int(cite.split(":")[1]) - 1]


def test_a_module_instance_in_the_table_records_the_field(tmp_path):
    """afn="relu" picks the table's `nn.ReLU()`: the field is recorded as for a function."""
    copy, _ = rename_model("openai-gpt", "zorblax", str(tmp_path))
    rename_field(copy, "afn", "act_kind")
    features = analyze(copy, _config(tmp_path, model_type="zorblax", act_kind="relu"))
    assert features.ffn.activation == "relu"
    assert features.ffn.activation_field == "act_kind"
    assert "[config.act_kind]" in _cited_line(features, Path(copy))


def test_a_function_and_a_class_of_the_file_in_the_table_record_the_field(tmp_path):
    """Table entries defined in the analysed file: a function (inlined by the trace) and a
    class built at the table, each picked by the field."""
    copy, _ = rename_model("openai-gpt", "zorblax", str(tmp_path))
    modeling = Path(copy)
    text = modeling.read_text()
    table = re.search(r"(?m)^ACT_FNS = \{.*\}$", text).group(0)
    own = (
        "def own_gelu(x):\n    return gelu_new(x)\n\n\n"
        "class OwnReLU(nn.ReLU):\n    pass\n\n\n"
        'ACT_FNS = {"relu": OwnReLU(), "gelu": own_gelu}'
    )
    modeling.write_text(text.replace(table, own))
    for afn, activation in (("gelu", "gelu_new"), ("relu", "relu")):
        features = analyze(copy, _config(tmp_path, model_type="zorblax", afn=afn))
        assert features.ffn.activation == activation, afn
        assert features.ffn.activation_field == "afn", afn
        assert "ACT_FNS[config.afn]" in _cited_line(features, modeling)
