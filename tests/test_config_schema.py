from pathlib import Path

import yaml

from diffguide.pipeline.config_schema import (SCHEMA_PATH, coerce_command_line_values, describe_config_errors,
                                              load_schema)

SCHEMA = load_schema(SCHEMA_PATH)


def test_command_line_strings_become_numbers_where_the_schema_wants_numbers():
    config = {"guidance": {"cfg_scales": ["0", "0.5", "3"]}, "run": "007", "sampling": {"steps": "10"}}
    coerced = coerce_command_line_values(config, SCHEMA)
    assert coerced == {"guidance": {"cfg_scales": [0, 0.5, 3]}, "run": "007", "sampling": {"steps": 10}}


def test_shipped_configs_are_valid():
    root = Path(__file__).resolve().parents[1] / "config"
    for name in ("config.yaml", "smoke.yaml"):
        assert describe_config_errors(yaml.safe_load((root / name).read_text()), SCHEMA) == [], name


def test_every_error_is_one_line_naming_its_key():
    lines = describe_config_errors({"sampling": {"eta": -1, "bogus": 2}, "seed": "x"}, SCHEMA)
    assert any(line.startswith("  sampling.eta: -1 is less than the minimum of 0") for line in lines)
    assert any(line.startswith("  sampling.bogus: unknown key") for line in lines)
    assert any(line.startswith("  seed: 'x' is not of type 'integer'") for line in lines)


def test_every_schema_key_has_a_default_or_is_a_section_with_defaults():
    def walk(schema, path):
        for key, sub in schema.get("properties", {}).items():
            assert "default" in sub, f"{path}{key} has no default"
            walk(sub, f"{path}{key}.")
    walk(SCHEMA, "")
