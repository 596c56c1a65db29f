"""LogitSoftcap: before/after on llama, and reading the cap's field from HF source."""

from types import SimpleNamespace

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms import logit_softcap
from codegen.transforms.edits import EditError
from codegen.transforms.logit_softcap import LogitSoftcap


def test_logits_are_capped_with_the_mapped_field():
    package = SourcePackage.from_directory(references_dir() / "llama")
    LogitSoftcap().apply(package, field="final_logit_softcapping")
    files = package.render()
    assert files["model.py"].endswith(
        "        logits = self.output(h)\n"
        "        cap = self.args.final_logit_softcapping\n"
        "        if cap is None:  # the config switches the cap off\n"
        "            return logits\n"
        "        # with nothing recording the ops the cap runs in place: one logit-sized tensor\n"
        "        if not logits.requires_grad:\n"
        "            return logits.div_(cap).tanh_().mul_(cap)\n"
        "        # tanh's backward reads its output, so the scale is out of place: two logit-sized "
        "tensors\n"
        "        logits = (logits / cap).tanh_()\n"
        "        return logits * cap\n"
    )
    assert (
        "final_logit_softcapping: float | None = 30.0  # logits = tanh(logits / cap) * cap;"
        in (files["args.py"])
    )
    assert "final_logit_softcapping=hf_config.final_logit_softcapping," in files["args.py"]


def test_detects_the_field_beside_other_logit_divisions(tmp_path):
    path = tmp_path / "modeling_x.py"
    path.write_text(
        "logits = logits / self.config.logits_scaling\n"
        "if self.config.final_logit_softcapping is not None:\n"
        "    logits = logits / self.config.final_logit_softcapping\n"
        "    logits = torch.tanh(logits)\n"
    )
    features = SimpleNamespace(source=SimpleNamespace(modeling=str(path)))
    assert logit_softcap.detect(features) == "final_logit_softcapping"


def test_an_upcast_before_the_cap_is_kept(tmp_path):
    """`logits.float() / cap` (beam): a bf16 model's capped logits are computed in fp32."""
    path = tmp_path / "modeling_x.py"
    path.write_text(
        "if self.config.final_logit_softcapping is not None:\n"
        "    logits = logits.float() / self.config.final_logit_softcapping\n"
        "    logits = torch.tanh(logits)\n"
    )
    features = SimpleNamespace(source=SimpleNamespace(modeling=str(path)))
    assert logit_softcap.detect(features) == "final_logit_softcapping"
    package = SourcePackage.from_directory(references_dir() / "llama")
    LogitSoftcap().apply(package, features)
    model = package.render()["model.py"]
    assert "logits = (logits.float() / cap).tanh_()" in model
    assert "return logits.float().div_(cap).tanh_().mul_(cap)" in model


def test_reads_a_cap_module_of_the_causal_lm(tmp_path):
    """`logits = self.logit_softcap(logits)`, the module built from the config field and its
    forward taking the tanh (inkling2); the logits upcast first: the cap runs in fp32."""
    path = tmp_path / "modeling_x.py"
    path.write_text(
        "class Softcap(nn.Module):\n"
        "    def __init__(self, softcap):\n"
        "        self.softcap = softcap\n"
        "    def forward(self, x):\n"
        "        return torch.tanh(x / self.softcap) * self.softcap\n"
        "class ForCausalLM:\n"
        "    def __init__(self, config):\n"
        "        self.logit_softcap = Softcap(config.final_logit_softcapping)\n"
        "    def forward(self, h):\n"
        "        logits = self.lm_head(h).float()\n"
        "        logits = self.logit_softcap(logits)\n"
        "        return logits\n"
    )
    features = SimpleNamespace(source=SimpleNamespace(modeling=str(path)))
    assert logit_softcap._detect(features) == ("final_logit_softcapping", True)
    # a module whose forward takes no tanh is no cap
    path.write_text(path.read_text().replace("torch.tanh(x / self.softcap)", "(x / self.softcap)"))
    with pytest.raises(EditError):
        logit_softcap._detect(features)


def _capped_llama(tmp_path):
    """The llama reference with the cap, written as a package and imported: (module, args)."""
    import importlib
    import sys

    package = SourcePackage.from_directory(references_dir() / "llama")
    LogitSoftcap().apply(package, field="final_logit_softcapping")
    folder = tmp_path / "capped_llama"
    folder.mkdir()
    for name, text in package.render().items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        model = importlib.import_module("capped_llama.model")
        args = importlib.import_module("capped_llama.args")
    finally:
        sys.path.remove(str(tmp_path))
    return model, args.ModelArgs(
        dim=32, n_layers=1, n_heads=2, n_kv_heads=1, head_dim=16, hidden_dim=64, vocab_size=64
    )


def test_without_autograd_the_cap_runs_in_the_head_s_own_tensor(tmp_path):
    """No gradient recorded: the capped logits are the tensor the head wrote (one logit-sized
    tensor, not two), equal bit for bit to the out-of-place cap autograd runs, and with
    autograd the cap still backpropagates (tanh's saved output is not overwritten)."""
    import torch

    module, args = _capped_llama(tmp_path)
    args.final_logit_softcapping = 0.5  # small: the cap changes every logit
    torch.manual_seed(0)
    model = module.Model(args)
    for param in model.parameters():
        torch.nn.init.normal_(param)
    tokens = torch.randint(0, args.vocab_size, (2, 5))
    written = []
    model.output.register_forward_hook(lambda mod, inp, out: written.append(out))
    with torch.no_grad():
        capped = model(tokens)
    assert capped.data_ptr() == written[-1].data_ptr()
    trained = model(tokens)
    assert trained.requires_grad and trained.data_ptr() != written[-1].data_ptr()
    assert torch.equal(capped, trained.detach())
    assert capped.abs().max() <= 0.5
    trained.sum().backward()
    assert model.output.weight.grad is not None
