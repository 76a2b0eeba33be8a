import pytest

from farsight.config import ConfigError, apply_overrides, build_config, from_dict, to_dict
from farsight.data.recorder import RECORD_RECIPES, RecordConfig
from farsight.train.recipes.dynamics import DynamicsRunConfig


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


def test_a_stored_config_with_renamed_keys_loads_into_the_new_fields():
    stored = to_dict(DynamicsRunConfig())
    del stored["model"]["context_level_embed"]
    del stored["objective"]["context_level"], stored["objective"]["context_level_max"]
    stored["model"]["ctx_noise_embed"] = True
    stored["objective"].update(context_tau=0.05, ctx_noise_max=0.4)
    cfg = from_dict(DynamicsRunConfig, stored, source="old run")
    assert cfg.model.context_level_embed is True
    assert cfg.objective.context_level == 0.05 and cfg.objective.context_level_max == 0.4
    assert "context_tau" in stored["objective"]  # the caller's dict is left as it was


def test_an_override_with_a_renamed_key_names_the_new_key():
    msg = "objective.ctx_noise_max was renamed objective.context_level_max"
    with pytest.raises(ConfigError, match=msg):
        apply_overrides(DynamicsRunConfig(), ["objective.ctx_noise_max=0.5"])
    with pytest.raises(ConfigError, match="model.ctx_noise_embed was renamed"):
        apply_overrides(DynamicsRunConfig(), ["model.ctx_noise_embed=true"])
