"""The SLURM profiles (profiles/cluster, profiles/cluster-cpu) name real rules and stay in step: the CPU-only
profile differs from the GPU one only in GPU requests and the embedding jobs' runtime. bench/slurm_demo.sh
runs them on a real one-node cluster (root needed, so kept out of the tests)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def profile(name: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text(encoding="utf-8"))


def workflow_rules() -> set[str]:
    text = "\n".join(
        path.read_text(encoding="utf-8") for path in [REPO / "Snakefile", *REPO.glob("rules/*.smk")]
    )
    return set(re.findall(r"^rule (\w+):", text, flags=re.MULTILINE))


def without_gpu_settings(resources: dict) -> dict:
    """Each rule's resources with `gpu` and the embedding runtime left out (what may differ)."""
    kept = {}
    for rule, settings in resources.items():
        settings = {key: value for key, value in settings.items() if key != "gpu"}
        if rule == "embed_shard":
            settings.pop("runtime", None)
        kept[rule] = settings
    return kept


def test_profiles_set_resources_of_rules_that_exist():
    rules = workflow_rules()
    for name in ("cluster", "cluster-cpu"):
        unknown = set(profile(name)["set-resources"]) - rules
        assert not unknown, (name, unknown)


def test_the_gpu_profile_asks_a_gpu_for_embedding_and_the_cpu_profile_for_none():
    gpu, cpu = profile("cluster"), profile("cluster-cpu")
    assert gpu["set-resources"]["embed_shard"]["gpu"] == 1
    assert all(settings.get("gpu", 0) == 0 for settings in cpu["set-resources"].values())
    # predict's gpu comes from the rule (a local model's job asks for one); the CPU profile sets it to 0.
    assert cpu["set-resources"]["predict"]["gpu"] == 0 and "gpu" not in gpu["set-resources"]["predict"]


def test_the_two_profiles_differ_only_in_gpu_requests():
    gpu, cpu = profile("cluster"), profile("cluster-cpu")
    assert without_gpu_settings(gpu["set-resources"]) == without_gpu_settings(cpu["set-resources"])
    same = {
        key: value for key, value in gpu.items() if key not in ("set-resources", "slurm-partition-config")
    }
    assert same == {key: value for key, value in cpu.items() if key in same}
    assert set(cpu) - {"set-resources", "slurm-partition-config"} == set(same)
