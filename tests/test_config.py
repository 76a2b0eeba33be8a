import pytest

from farsight.config import ConfigError, apply_overrides, build_config, from_dict, to_dict
from farsight.data.recorder import RECORD_RECIPES, RecordConfig


def test_overrides_are_typed_and_nested():
    cfg = apply_overrides(
        RecordConfig(), ["env.arena.num_objects=7", "frames=123", "env.id=crafter"]
    )
    assert cfg.env.arena.num_objects == 7 and cfg.frames == 123 and cfg.env.id == "crafter"
    assert RecordConfig().frames != 123  # the default is untouched


def test_unknown_key_names_it_and_lists_valid_keys():
    with pytest.raises(ConfigError) as e:
        apply_overrides(RecordConfig(), ["env.arena.num_objcts=3"])
    msg = str(e.value)
    assert "env.arena.num_objcts" in msg
    assert "env.arena.num_objects" in msg and "env.arena.pixel_noise" in msg
    with pytest.raises(ConfigError, match="unknown config key 'bogus'.*frames.*seed"):
        apply_overrides(RecordConfig(), ["bogus=1"])


def test_badly_typed_value_names_key():
    with pytest.raises(ConfigError, match="'frames'.*many.*int"):
        apply_overrides(RecordConfig(), ["frames=many"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides(RecordConfig(), ["frames"])


def test_recipes_and_round_trip():
    cfg = build_config(RECORD_RECIPES, "arena_noisy", ["seed=5"], ["frames=10"])
    assert cfg.env.arena.pixel_noise > 0 and cfg.seed == 5 and cfg.frames == 10
    assert from_dict(RecordConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="unknown record recipe 'nope'.*arena"):
        RECORD_RECIPES.get("nope")
    with pytest.raises(ConfigError, match="stored.*'frobs'"):
        from_dict(RecordConfig, {"frobs": 1}, source="stored")
