"""Our own remote-code style fixtures, one module per group of idioms (issue 9)."""

from tests.analyze.idioms import alibi, flashy, handmoe, heldout, packed

FIXTURES = [flashy, packed, alibi, handmoe, heldout]
