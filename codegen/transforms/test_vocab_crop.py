"""VocabCrop: before/after on llama."""

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.vocab_crop import VocabCrop


def test_the_logits_are_cut_to_the_mapped_field():
    package = SourcePackage.from_directory(references_dir() / "llama")
    before = package.render()
    assert before["model.py"].endswith("        return self.output(h)\n")
    VocabCrop().apply(package, field="unpadded_vocab_size")
    files = package.render()
    assert files["model.py"].endswith(
        "        logits = self.output(h)\n"
        "        return logits[..., : self.args.unpadded_vocab_size]\n"
    )
    assert (
        "    unpadded_vocab_size: int | None = None  # the logits' columns kept (a padded head);"
        " None: all\n" in files["args.py"]
    )
    assert "unpadded_vocab_size=hf_config.unpadded_vocab_size," in files["args.py"]
    # the head and its adapter row stay as wide as the checkpoint's
    assert files["state_dict_adapter.py"] == before["state_dict_adapter.py"]
    assert "self.output = nn.Linear(args.dim, args.vocab_size" in files["model.py"]
