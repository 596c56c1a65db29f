"""The config field a prediction head's activation is looked up by is read from the
structure: ModernBERT-decoder's `ACT2FN[config.classifier_activation]`, on a renamed copy
whose field is `head_act_kind`, gives `head.transform_activation_field == "head_act_kind"`
cited at that line; BERT's head reads hidden_act; RoBERTa's, calling `gelu(x)`, none. A
written-out head activation computing none of the known ones is reported under the head's
own label, not the MLP's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from analyze_helpers import rename_field, rename_model

from codegen.analyze.analysis import analyze


def test_renamed_copy_records_the_heads_activation_field(tmp_path):
    copy, _ = rename_model("modernbert-decoder", "zorblax", str(tmp_path))
    rename_field(copy, "classifier_activation", "head_act_kind")
    features = analyze(copy)
    head = features.head
    assert (head.transform, head.transform_activation) == (True, "gelu")
    assert head.transform_activation_field == "head_act_kind"
    cite = features.evidence["head.transform_activation_field"]
    assert cite.startswith("modeling_zorblax.py:"), cite
    line = Path(copy).read_text().splitlines()[int(cite.split(":")[1]) - 1]
    assert "ACT2FN[config.head_act_kind]" in line, line
    # the FFN's activation is looked up by a field of its own
    assert features.ffn.activation_field == "hidden_activation"


def test_bert_head_reads_hidden_act_and_a_called_function_no_field():
    assert analyze("megatron-bert").head.transform_activation_field == "hidden_act"
    roberta = analyze("roberta").head
    assert (roberta.transform, roberta.transform_activation_field) == (True, "")


OWN_GELU = (
    "import math\n\n\ndef own_gelu(x):\n"
    "    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))\n\n\n"
    "class OwnGelu(nn.Module):\n    def forward(self, x):\n        return own_gelu(x)\n\n\n"
)


@pytest.mark.parametrize("entry", ["own_gelu", "OwnGelu()", "nn.GELU()"])
def test_a_head_activation_picked_from_a_local_table_records_its_field(tmp_path, entry):
    """`OWN_ACTS[config.classifier_activation]` with a table of the file's own (a written-out
    function, a module of its own, a torch module): the head's activation is named by what
    it computes and its field recorded, cited at the lookup, as for ACT2FN."""
    copy, _ = rename_model("modernbert-decoder", "zorblax", str(tmp_path))
    modeling = Path(copy)
    text = modeling.read_text()
    lookup = "ACT2FN[config.classifier_activation]"
    assert text.count(lookup) == 1
    text = text.replace(lookup, "OWN_ACTS[config.classifier_activation]")
    first_class = re.search(r"(?m)^(@|class )", text).start()
    table = OWN_GELU + f'OWN_ACTS = {{"gelu": {entry}}}\n\n\n'
    modeling.write_text(text[:first_class] + table + text[first_class:])
    features = analyze(copy)
    head = features.head
    assert (head.transform, head.transform_activation) == (True, "gelu")
    assert head.transform_activation_field == "classifier_activation"
    cite = features.evidence["head.transform_activation_field"]
    line = modeling.read_text().splitlines()[int(cite.split(":")[1]) - 1]
    assert "OWN_ACTS[config.classifier_activation]" in line, line


def test_an_unknown_written_out_head_activation_is_reported_as_the_heads(tmp_path):
    """`OWN_ACTS[config.classifier_activation]` picking `x * tanh(x)`, a function of the
    file's own: unsupported as `head.transform_activation`, cited where the head applies it,
    while the MLP's (ACT2FN's) stays known and unreported."""
    copy, _ = rename_model("modernbert-decoder", "zorblax", str(tmp_path))
    modeling = Path(copy)
    text = modeling.read_text()
    text = text.replace(
        "ACT2FN[config.classifier_activation]", "OWN_ACTS[config.classifier_activation]"
    )
    first_class = re.search(r"(?m)^(@|class )", text).start()
    own = "def own_act(x):\n    return x * torch.tanh(x)\n\n\n"
    modeling.write_text(
        text[:first_class] + own + 'OWN_ACTS = {"gelu": own_act}\n\n\n' + text[first_class:]
    )
    features = analyze(copy)
    labels = [u.feature for u in features.unsupported]
    assert "head.transform_activation" in labels and "ffn.activation" not in labels, labels
    (found,) = [u for u in features.unsupported if u.feature == "head.transform_activation"]
    assert "write the head's transform with one of them" in found.detail, found.detail
    line = modeling.read_text().splitlines()[int(found.evidence.split(":")[1]) - 1]
    assert "self.act(self.dense(" in line, (found.evidence, line)
    assert (features.head.transform_activation, features.ffn.activation) == ("custom", "gelu")
