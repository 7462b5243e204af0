"""Docs and deployment files must match the code (they cannot run here without Docker)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from services.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text(encoding="utf-8").split("\n")[:8]
    assert any(line.startswith("make run") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_docs_document_every_setting_and_no_stale_ones() -> None:
    """docs/configuration.md has a row per setting; no page names a setting that is gone."""
    settings = {f"VOC_{name.upper()}" for name in Settings.model_fields}
    reference = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert set(re.findall(r"^\| `(VOC_[A-Z_]+)` \|", reference, flags=re.M)) == settings
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        named = set(re.findall(r"\b(VOC_[A-Z_]*[A-Z])\b", page.read_text(encoding="utf-8")))
        assert named - {"VOC_TEST_CLICKHOUSE"} <= settings, (page.name, named - settings)


def test_compose_uses_only_real_settings_and_pinned_images() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yaml").read_text())
    known = {f"VOC_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
        for variable in service.get("environment", {}):
            if variable.startswith("VOC_"):
                assert variable in known, f"{name}: {variable} is not a setting"
    assert {"ingest", "nlp", "scoring", "alerting"} <= set(compose["services"])
    assert [compose["services"][s].get("command") for s in
            ("ingest", "nlp", "scoring", "alerting")] == \
        [["ingest"], ["nlp"], ["scoring"], ["alerting"]]


def k8s_documents() -> list[dict]:
    folder = ROOT / "deploy" / "k8s"
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    documents = []
    for name in kustomization["resources"]:
        documents += [d for d in yaml.safe_load_all((folder / name).read_text()) if d]
    return documents


def test_k8s_one_deployment_per_service_with_probes_resources_and_real_settings() -> None:
    known = {f"VOC_{name.upper()}" for name in Settings.model_fields}
    documents = k8s_documents()
    config = next(d for d in documents if d["kind"] == "ConfigMap")
    assert set(config["data"]) <= known, set(config["data"]) - known
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    assert set(deployments) == {"voc-ingest", "voc-nlp", "voc-scoring", "voc-alerting"}
    for name, deployment in deployments.items():
        spec = deployment["spec"]
        assert spec["selector"]["matchLabels"].items() <= \
            spec["template"]["metadata"]["labels"].items(), name
        [container] = spec["template"]["spec"]["containers"]
        assert container["args"] == [name.removeprefix("voc-")]
        image = container["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image tag"
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        assert set(env) <= known, f"{name}: {set(env) - known} are not settings"
        port = container["ports"][0]["containerPort"]
        expected_port = env.get("VOC_HTTP_PORT") if name == "voc-ingest" else env.get("VOC_OPS_PORT")
        assert str(port) == expected_port, f"{name}: probes must hit the port the process serves"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert {"requests", "limits"} <= set(container["resources"])
        assert {"configMapRef", "secretRef"} <= {k for ref in container["envFrom"] for k in ref}


def test_keda_scales_on_the_real_consumer_groups_and_topics() -> None:
    documents = k8s_documents()
    config = next(d for d in documents if d["kind"] == "ConfigMap")["data"]
    settings = Settings(topic_prefix=config["VOC_TOPIC_PREFIX"], group_prefix=config["VOC_GROUP_PREFIX"])
    deployments = {d["metadata"]["name"] for d in documents if d["kind"] == "Deployment"}
    inputs = {"nlp": "feedback.raw", "scoring": "feedback.enriched"}
    scaled = [d for d in documents if d["kind"] == "ScaledObject"]
    assert {d["spec"]["scaleTargetRef"]["name"] for d in scaled} == {"voc-nlp", "voc-scoring"}
    for document in scaled:
        target = document["spec"]["scaleTargetRef"]["name"]
        assert target in deployments
        service = target.removeprefix("voc-")
        [trigger] = document["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == settings.group(service)
        assert trigger["metadata"]["topic"] == settings.topic(inputs[service])
        assert trigger["metadata"]["bootstrapServers"] == config["VOC_KAFKA_BOOTSTRAP"]
        assert document["spec"]["maxReplicaCount"] <= int(config["VOC_TOPIC_PARTITIONS"])


def test_compose_prometheus_scrapes_the_ports_services_serve() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yaml").read_text())
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    ops_port = int(compose["x-voc-env"]["VOC_OPS_PORT"])
    targets = {name: sd["port"] for sd in scrape["scrape_configs"][0]["dns_sd_configs"]
               for name in sd["names"]}
    assert targets == {"ingest": ops_port, "nlp": ops_port, "scoring": ops_port,
                       "alerting": ops_port}, "every process serves open metrics on its ops port"
    for service in ("prometheus", "grafana"):
        image = compose["services"][service]["image"]
        assert ":" in image and not image.endswith(":latest")


def test_deployments_ship_with_authentication_on() -> None:
    """The API listens on 0.0.0.0 in both setups, where it refuses to start without
    credentials: each ships a keys file from a secret, and nothing else is left open."""
    compose = yaml.safe_load((ROOT / "deploy" / "docker-compose.yaml").read_text())
    ingest = compose["services"]["ingest"]
    keys_file = ingest["environment"]["VOC_API_KEYS_FILE"]
    assert ingest["environment"]["VOC_HTTP_HOST"] == "0.0.0.0"
    assert keys_file == f"/run/secrets/{ingest['secrets'][0]}"
    assert compose["secrets"][ingest["secrets"][0]]["file"].startswith("./secrets/")
    assert "VOC_INSECURE_NO_AUTH" not in ingest["environment"]
    grafana = compose["services"]["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    published = [port for service in compose["services"].values()
                 for port in service.get("ports", [])]
    assert all(port == "8000:8000" or port.startswith("127.0.0.1:") or port == "3000:3000"
               for port in published), published

    documents = k8s_documents()
    deployment = next(d for d in documents if d["metadata"]["name"] == "voc-ingest")
    pod = deployment["spec"]["template"]
    [container] = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if env["VOC_API_KEYS_FILE"].startswith(
        m["mountPath"] + "/"))
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
    example = list(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "secret.example.yaml").read_text()))
    secret = next(d for d in example if d["metadata"]["name"] == volume["secret"]["secretName"])
    assert env["VOC_API_KEYS_FILE"].rsplit("/", 1)[1] in secret["stringData"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == env["VOC_OPS_PORT"], \
        "Prometheus scrapes the open ops port, not the API's admin-only /metrics"
