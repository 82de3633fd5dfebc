"""Mistakes in params.yaml are reported when the workflow starts, naming the key."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from spinebench.backends import REGISTRY, BackendError, make_backend, openai_compat, transformers_local
from spinebench.config_checks import ConfigError, check_config
from spinebench.workflow import SNAKEMAKE, copy_workflow

pytestmark = pytest.mark.faults  # the fault-injection suite (pytest -m faults)

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "schemas" / "params.schema.json").read_text())
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def backend_schemas() -> dict[str, dict]:
    """backend name -> the `then` schema its models are validated against."""
    rules = SCHEMA["properties"]["models"]["additionalProperties"]["allOf"]
    return {rule["if"]["properties"]["backend"]["const"]: rule["then"] for rule in rules}


def validate_models(models: dict) -> None:
    jsonschema.validate({**PARAMS, "models": models}, SCHEMA)


def test_every_backend_has_a_closed_settings_schema():
    schemas = backend_schemas()
    assert set(schemas) == set(REGISTRY)
    assert all(schema["additionalProperties"] is False for schema in schemas.values())


@pytest.mark.parametrize(
    ("backend", "settings"),
    [("openai", openai_compat.SETTINGS), ("transformers", transformers_local.SETTINGS)],
)
def test_schema_and_backend_accept_the_same_settings(backend, settings):
    assert set(backend_schemas()[backend]["properties"]) - {"backend"} == set(settings)


def test_baselines_accept_what_the_schema_accepts():
    for backend in ("random", "always_healthy"):
        assert set(backend_schemas()[backend]["properties"]) == {"backend"}
        make_backend("m", {"backend": backend})
        with pytest.raises(BackendError, match="unknown setting"):
            make_backend("m", {"backend": backend, "seed": 7})
    assert set(backend_schemas()["nearest_neighbour"]["properties"]) == {"backend", "k"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"backend": "random", "seed": 7}, "'seed' was unexpected"),
        ({"backend": "openai", "base_url": "http://h/v1", "model": "m", "temprature": 0}, "'temprature'"),
        ({"backend": "openai", "model": "m"}, "'base_url' is a required property"),
        ({"backend": "transformers", "path": "/m", "torch_dtype": "fp8"}, "'fp8' is not one of"),
    ],
)
def test_schema_names_a_mistyped_or_missing_model_setting(settings, message):
    with pytest.raises(jsonschema.ValidationError, match=message):
        validate_models({"my-model": settings})


def test_reversed_percentiles_and_unset_api_keys_are_reported_together():
    config = {
        **PARAMS,
        "render": {**PARAMS["render"], "xray_percentiles": [99.5, 0.5]},
        "models": {
            "api": {"backend": "openai", "base_url": "http://h/v1", "model": "m", "api_key_env": "KEY_A"},
            "done": {"backend": "openai", "base_url": "http://h/v1", "model": "m", "api_key_env": "KEY_B"},
            "keyed": {"backend": "openai", "base_url": "http://h/v1", "model": "m", "api_key_env": "KEY_C"},
        },
    }
    with pytest.raises(ConfigError) as error:
        check_config(config, needs_predictions=lambda model: model != "done", environ={"KEY_C": "sk-1"})
    message = str(error.value)
    assert "render.xray_percentiles is [99.5, 0.5]" in message
    assert "models.api.api_key_env names KEY_A" in message
    assert "KEY_B" not in message and "KEY_C" not in message
    check_config(PARAMS, needs_predictions=lambda model: True, environ={})


def test_the_workflow_refuses_to_start_and_names_the_key(tmp_path):
    copy_workflow(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"render": {**PARAMS["render"], "mr_percentiles": [99, 1]}}))
    result = subprocess.run(
        [SNAKEMAKE, "-n", "--configfile", str(bad)], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "render.mr_percentiles is [99, 1]" in result.stdout + result.stderr
