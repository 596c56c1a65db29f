"""SetRopePerLayerType: before/after on the references, and the two tables it builds."""

import ast
import importlib
import sys

import libcst as cst
import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.rope_per_layer_type import SetRopePerLayerType
from codegen.transforms.sliding_window import SetSlidingWindow


def _package(reference):
    return SourcePackage.from_directory(references_dir() / reference)


def _flat(text: str) -> str:
    return " ".join(text.replace("(\n", "(").replace(",\n", ", ").split()).replace("( ", "(")


def test_a_sliding_package_gets_a_table_per_layer_type():
    package = _package("qwen3")  # qwen3 has the window pattern natively
    before = package.render()
    assert 'rope["full_attention"]' not in before["args.py"]
    SetRopePerLayerType().apply(package)
    files = package.render()
    args, model = _flat(files["args.py"]), files["model.py"]
    assert (
        'rope=RopeScaling.from_hf(rope["full_attention"], hf_config.max_position_embeddings)'
        in args
    )
    assert (
        'sliding_rope=RopeScaling.from_hf(rope["sliding_attention"],'
        " hf_config.max_position_embeddings)" in args
    )
    assert "sliding_rope: RopeScaling | None = None" in files["args.py"]
    assert (
        "self.sliding_rotary = RotaryEmbedding(args.sliding_rope or args.rope, args.head_dim)"
        in (model)
    )
    assert (
        "layer(h, sliding_rope if layer.sliding else rope, window if layer.sliding else None)"
        in (model)
    )


def test_the_sliding_table_is_built_only_when_a_layer_slides():
    """Before, `sliding_rope` was computed on every forward, read or not; now it is built
    beside the window mask, under the check that some layer slides."""
    package = _package("qwen3")
    SetRopePerLayerType().apply(package)
    forward = _forward(package.render()["model.py"])
    assert "window = sliding_rope = None" in forward
    block = forward[forward.index("if 'sliding_attention' in self.args.layer_types:") :]
    assert block[1:3] == [
        "window = sliding_window_mask(seq, self.args.sliding_window, tokens.device)",
        "sliding_rope = self.sliding_rotary(positions)",
    ]
    assert forward.count("sliding_rope = self.sliding_rotary(positions)") == 1


def _forward(model: str) -> list[str]:
    """Model.forward's statements, nested ones on lines of their own (ast-unparsed)."""
    tree = ast.parse(model)
    owner = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Model")
    method = next(n for n in owner.body if isinstance(n, ast.FunctionDef) and n.name == "forward")
    return [line.strip() for s in method.body for line in ast.unparse(s).splitlines()]


def test_without_a_window_pattern_only_the_full_table_is_read():
    package = _package("llama")
    SetRopePerLayerType().apply(package)
    files = package.render()
    assert 'hf_config.rope_parameters["full_attention"]' in _flat(files["args.py"])
    assert "sliding_rope" not in files["args.py"] + files["model.py"]


def test_the_sliding_layers_rotate_with_their_own_theta(tmp_path):
    """Built from a nested config: the full and sliding tables differ where the thetas do."""
    package = _package("llama")
    SetSlidingWindow().apply(package, mode="pattern")
    SetRopePerLayerType().apply(package)
    folder = tmp_path / "gen_rope_types"
    folder.mkdir()
    for filename, text in package.render().items():
        (folder / filename).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args_module = importlib.import_module("gen_rope_types.args")
        model_module = importlib.import_module("gen_rope_types.model")
    finally:
        sys.path.remove(str(tmp_path))

    class Config:
        hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads = 32, 2, 4, 2
        intermediate_size, vocab_size, rms_norm_eps, max_position_embeddings = 64, 50, 1e-6, 64
        attention_bias = mlp_bias = tie_word_embeddings = False
        hidden_act, sliding_window = "silu", 4
        layer_types = ["sliding_attention", "full_attention"]
        rope_parameters = {
            "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        }

    args = args_module.ModelArgs.from_hf_config(Config())
    assert (args.rope.theta, args.sliding_rope.theta) == (1000000.0, 10000.0)
    model = model_module.Model(args)
    positions = torch.arange(8)[None]
    full, sliding = model.rotary(positions), model.sliding_rotary(positions)
    assert not torch.allclose(full[0], sliding[0])

    # the forward hands the sliding layer the sliding table, and builds it only then
    seen, built = [], []
    for layer in model.layers:
        layer.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[1][0]))
    model.sliding_rotary.register_forward_hook(lambda *_: built.append(True))
    tokens = torch.arange(8)[None] % 50
    model(tokens)
    assert torch.equal(seen[0], sliding[0]) and torch.equal(seen[1], full[0]) and built
    Config.layer_types = ["full_attention", "full_attention"]  # no layer slides
    model = model_module.Model(args_module.ModelArgs.from_hf_config(Config()))
    built.clear()
    model.sliding_rotary.register_forward_hook(lambda *_: built.append(True))
    model(tokens)
    assert not built


def test_both_tables_and_the_window_are_freed_before_the_head(tmp_path):
    """HF's backbone frees its position embeddings and masks when it returns, before the
    head: the package deletes both tables and the window mask right after the layer loop,
    so none is held while the head computes the logits."""
    package = _package("llama")
    SetSlidingWindow().apply(package, mode="pattern")
    SetRopePerLayerType().apply(package)
    forward = _forward(package.render()["model.py"])
    loop = next(i for i, s in enumerate(forward) if s.startswith("for layer in self.layers"))
    assert forward[loop + 2] == "del rope, sliding_rope, window"  # the loop's body is one line
    folder = tmp_path / "gen_rope_freed"
    folder.mkdir()
    for filename, text in package.render().items():
        (folder / filename).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args_module = importlib.import_module("gen_rope_freed.args")
        model_module = importlib.import_module("gen_rope_freed.model")
    finally:
        sys.path.remove(str(tmp_path))
    args = args_module.ModelArgs(
        dim=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        head_dim=8,
        vocab_size=50,
        hidden_dim=64,
        sliding_window=4,
        layer_types=("sliding_attention", "full_attention"),
    )
    model = model_module.Model(args)
    code, held = model_module.Model.forward.__code__, set()

    def look(module, inputs):
        frame = sys._getframe(1)
        while frame.f_code is not code:
            frame = frame.f_back
        held.update(frame.f_locals)

    model.output.register_forward_pre_hook(look)
    with torch.no_grad():
        model(torch.randint(0, 50, (1, 6)))
    assert held and not held & {"rope", "sliding_rope", "window"}


def test_a_written_out_attention_frees_the_window_with_its_hidden_masks():
    """Made explicit after the split (sinks), the attention takes the keys each mask hides:
    the hidden masks' line frees the window, which leaves the tables' line; made explicit
    before it, the tables' line never names the window. Either way one `del` names it."""
    from codegen.transforms.attention_sinks import AddAttentionSinks

    for sinks_first in (False, True):
        package = _package("llama")
        SetSlidingWindow().apply(package, mode="pattern")
        if sinks_first:
            AddAttentionSinks().apply(package)
        SetRopePerLayerType().apply(package)
        if not sinks_first:
            AddAttentionSinks().apply(package)
        forward = _forward(package.render()["model.py"])
        frees = [s for s in forward if s.startswith("del ")]
        assert sorted(frees) == [
            "del future, window, hidden_window",
            "del rope, sliding_rope",
        ], sinks_first


def test_a_package_without_a_rope_call_is_refused():
    package = _package("llama")
    package.files["args.py"] = package.files["args.py"].visit(_DropFromHf())
    with pytest.raises(ValueError, match="no RopeScaling.from_hf"):
        SetRopePerLayerType().apply(package)


class _DropFromHf(cst.CSTTransformer):
    def leave_Attribute(self, original, updated):
        if updated.attr.value == "from_hf":
            return updated.with_changes(attr=updated.attr.with_changes(value="build"))
        return updated


def test_a_partial_rotary_dim_is_read_from_the_sliding_table():
    """laguna rotates half of a full layer's head and all of a sliding layer's: the sliding
    table's width comes from its own partial_rotary_factor."""
    from codegen.transforms.partial_rotary import PartialRotary

    package = _package("qwen3")
    PartialRotary().apply(package)
    SetRopePerLayerType().apply(package)
    model = _flat(package.render()["model.py"])
    assert (
        "self.sliding_rotary = RotaryEmbedding(args.sliding_rope or args.rope,"
        " (args.sliding_rope or args.rope).rotary_dim(args.head_dim))" in model
    )


def test_the_partial_factor_guard_reads_the_full_attention_entry():
    """Before, the guard read the flat dict; after the split a flat read would only ever see
    its defaults (a guard that can never fire), so it reads the entry `rope` is built from."""
    package = _package("qwen3")
    before = _flat(package.render()["args.py"])
    assert 'partial = rope.get("partial_rotary_factor", 1.0) != 1.0' in before
    SetRopePerLayerType().apply(package)
    after = _flat(package.render()["args.py"])
    assert 'partial = rope["full_attention"].get("partial_rotary_factor", 1.0) != 1.0' in after
    assert 'rope["full_attention"].get("rope_type", "default")' in after
    assert "rope.get(" not in after


def test_the_guard_refuses_a_scaled_partial_full_attention_entry(tmp_path):
    """The rewritten guard fires on the nested config it is handed."""
    package = _package("qwen3")
    SetRopePerLayerType().apply(package)
    folder = tmp_path / "gen_rope_guard"
    folder.mkdir()
    for filename, text in package.render().items():
        (folder / filename).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        args_module = importlib.import_module("gen_rope_guard.args")
    finally:
        sys.path.remove(str(tmp_path))

    class Config:
        hidden_size, num_hidden_layers, num_attention_heads, num_key_value_heads = 32, 2, 4, 2
        intermediate_size, vocab_size, rms_norm_eps, max_position_embeddings = 64, 50, 1e-6, 64
        attention_bias = tie_word_embeddings = use_sliding_window = False
        hidden_act, head_dim, sliding_window, max_window_layers = "silu", 8, None, 2
        layer_types = ["full_attention", "full_attention"]
        rope_parameters = {
            "full_attention": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 2.0,
                               "partial_rotary_factor": 0.5},
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        }  # fmt: skip

    with pytest.raises(NotImplementedError, match="partial_rotary_factor"):
        args_module.ModelArgs.from_hf_config(Config())


def test_a_full_attention_entry_of_none_builds_the_unused_table_from_the_sliding_one():
    """beam: rope_parameters["full_attention"] is None (those layers are NoPE): `rope` falls
    back to the sliding entry, which no full layer reads, instead of failing on None."""
    from types import SimpleNamespace

    features = SimpleNamespace(
        rope=SimpleNamespace(
            parameters={"sliding_attention": {"rope_type": "default"}, "full_attention": None}
        )
    )
    package = _package("qwen3")
    SetRopePerLayerType().apply(package, features)
    args = _flat(package.render()["args.py"])
    assert 'rope=RopeScaling.from_hf((rope["full_attention"] or rope["sliding_attention"]),' in args
    assert 'sliding_rope=RopeScaling.from_hf(rope["sliding_attention"],' in args


def test_the_other_layers_entry_is_named_as_the_config_names_it():
    """dots3: the layers that do not slide are "indexed_attention" (full attention narrowed
    by an indexer), and rope_parameters has that entry, not "full_attention"."""
    from types import SimpleNamespace

    features = SimpleNamespace(
        rope=SimpleNamespace(
            parameters={
                "indexed_attention": {"rope_type": "default"},
                "sliding_attention": {"rope_type": "default"},
            }
        )
    )
    package = _package("qwen3")
    SetRopePerLayerType().apply(package, features)
    args = _flat(package.render()["args.py"])
    assert 'rope=RopeScaling.from_hf(rope["indexed_attention"],' in args
    assert 'sliding_rope=RopeScaling.from_hf(rope["sliding_attention"],' in args
    assert '"full_attention"]' not in args.split("def from_hf_config")[1]
