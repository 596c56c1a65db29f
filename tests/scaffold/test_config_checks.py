"""require_settings: fixed values and `same_as` relations between two config fields."""

from types import SimpleNamespace

import pytest

from codegen.config_checks import require_settings

SAME = {"word_embed_proj_dim": {"same_as": "hidden_size"}}


def test_a_field_equal_to_the_named_field_passes():
    require_settings(SimpleNamespace(word_embed_proj_dim=96, hidden_size=96), SAME)
    require_settings(SimpleNamespace(hidden_size=96), SAME)  # a class without the field


def test_a_field_unlike_the_named_field_is_refused_in_one_line():
    with pytest.raises(NotImplementedError, match=r"word_embed_proj_dim=48 .*hidden_size=96"):
        require_settings(SimpleNamespace(word_embed_proj_dim=48, hidden_size=96), SAME)


def test_a_fixed_value_is_still_compared_as_a_value():
    with pytest.raises(NotImplementedError, match="enable_bias=False"):
        require_settings(SimpleNamespace(enable_bias=False), {"enable_bias": True})
