"""The cluster launcher config and the team services, checked with their own tools' schemas."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_ray_cluster_yaml_passes_rays_own_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    # what `ray up` does first: fill in the defaults, then check against Ray's JSON schema
    validate_config(prepare_config(config))
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"]["GPU"] == 0
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu and all(t["min_workers"] == 0 for t in gpu)  # GPU workers scale from zero
    broken = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    broken["available_node_types"]["gpu_worker"]["min_workrs"] = 0  # a typo is caught, so the check is real
    with pytest.raises(Exception, match="min_workrs"):
        validate_config(prepare_config(broken))
    options = " ".join(config["docker"]["run_options"])
    assert "OVATUNE_HOME=/mnt/shared" in options and "MLFLOW_TRACKING_URI=" in options


def test_team_services_keep_secrets_out_and_bind_loopback():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "minio", "mlflow"} <= set(services)
    command = " ".join(services["mlflow"]["command"])
    assert "postgresql" in command and "--artifacts-destination s3://" in command
    assert "--app-name basic-auth" in command and "default_permission = NO_PERMISSIONS" in command
    assert "mlflow[auth]" in services["mlflow"]["build"]["dockerfile_inline"]
    assert services["mlflow"]["ports"] == ["127.0.0.1:5000:5000"]
    # as the tests' team server runs (tests/test_tracking_server.py): no GenAI job consumers
    assert services["mlflow"]["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    text = (ROOT / "docker" / "compose.yaml").read_text()
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?" in text  # from the environment, required
    assert "MLFLOW_ADMIN_PASSWORD: ${MLFLOW_ADMIN_PASSWORD:?" in text
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    config = yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())
    assert all("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"] if "--head" in c)
    assert "torch==2.14.1 torchvision==0.29.1" in dockerfile and "rayproject/ray:2.60.0" in dockerfile
