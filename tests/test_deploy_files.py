"""The deployment files cannot run here (no Docker engine, no cluster): check them instead.

docker-compose.yml, deploy/Dockerfile, deploy/k8s/, the Prometheus and Grafana files and
deploy/README.md are checked against the real CLI parser, the configuration model, the
policy model, the metrics registry, the repository's files and each other.

The compose commands of ``solver`` and ``fleet`` (and the README lines that show them) parse
only once ``scm-worker solver`` and ``scm-worker fleet`` exist in the CLI.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.cli import build_parser
from worker.config import ENV_PREFIX, KAFKA_ENV_PREFIX, POLICY_KEYS, WorkerConfig

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
SHIPPED_BUNDLES = ROOT / "worker" / "data" / "bundles"
OFFICIAL_IMAGES = ("apache/kafka", "prom/prometheus", "grafana/grafana")
MONITORING = {"prometheus", "grafana"}
# Metrics the dashboard must show (issue 7); others may be added freely.
DASHBOARD_REQUIRED = {
    "scm_messages",
    "scm_results",
    "scm_dead_letters",
    "scm_consumer_lag",
    "scm_batch_size",
    "scm_inference_seconds",
    "scm_end_to_end_seconds",
    "scm_drift_alert_raised",
    "scm_in_flight",
    "scm_paused",
}
# Labels Prometheus adds to every scraped series.
TARGET_LABELS = {"instance", "job", "pod", "namespace"}


# --- loading -----------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _compose()["services"]
    return services


def _built_services() -> list[str]:
    return [name for name, service in _services().items() if "build" in service]


def _k8s_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        docs.extend(d for d in yaml.safe_load_all((K8S / resource).read_text()) if d)
    return docs


def _k8s(kind: str) -> dict[str, Any]:
    (doc,) = (d for d in _k8s_documents() if d["kind"] == kind)
    return doc


def _container() -> dict[str, Any]:
    (container,) = _k8s("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def _deployment_env() -> dict[str, Any]:
    return {item["name"]: item for item in _container()["env"]}


def _literal_env() -> dict[str, str]:
    return {name: item["value"] for name, item in _deployment_env().items() if "value" in item}


def _deployment_secret_refs() -> list[dict[str, str]]:
    return [
        item["valueFrom"]["secretKeyRef"]
        for item in _deployment_env().values()
        if "secretKeyRef" in item.get("valueFrom", {})
    ]


def _secret_values() -> dict[str, str]:
    secret = _k8s("Secret")
    values: dict[str, str] = dict(secret.get("stringData", {}))
    values.update(secret.get("data", {}))
    return values


def _dockerfile() -> list[str]:
    """Instructions with line continuations joined, comments dropped."""
    text = (DEPLOY / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in joined.splitlines() if line.strip() and line[0] != "#"]


def _policy_text() -> str:
    text: str = _k8s("ConfigMap")["data"]["policy.json"]
    return text


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEPLOY / "grafana/dashboards/scm-worker.json").read_text())
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _readme() -> str:
    return (DEPLOY / "README.md").read_text()


def _readme_commands() -> list[list[str]]:
    """Every ``scm-worker ...`` line in deploy/README.md's sh blocks, as argv (no program)."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", _readme(), flags=re.DOTALL):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["scm-worker"]:
                commands.append(words[1:])
    return commands


# --- shared facts --------------------------------------------------------------------------


def _parse(argv: list[str]) -> Any:
    """Parse with the real CLI; a refusal fails the test with the command line."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"`scm-worker {shlex.join(argv)}` is refused by the CLI (exit {exc.code})")


def _setting_problem(name: str) -> str | None:
    """Why an environment variable is not an scm-worker setting, or None when it is one."""
    if not name.startswith(ENV_PREFIX):
        return f"{name}: expected the {ENV_PREFIX} prefix"
    if name.startswith(KAFKA_ENV_PREFIX):
        return None  # any librdkafka property, SCM_WORKER_KAFKA_CONFIG included
    fields = (set(WorkerConfig.model_fields) - {"kafka_config", "policy"}) | set(POLICY_KEYS)
    if name.removeprefix(ENV_PREFIX).lower() not in fields:
        return f"{name}: no WorkerConfig field {name.removeprefix(ENV_PREFIX).lower()}"
    return None


def _config_from(
    argv: list[str], environ: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> WorkerConfig:
    """The WorkerConfig `scm-worker run` would build from this command line and environment."""
    from worker.cli.run_cmd import config_from_args

    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return config_from_args(_parse(argv))


def _created_topics() -> tuple[set[str], int]:
    """Topic names and partition count from the topics service's script."""
    script = "\n".join(_services()["topics"]["command"])
    names = re.search(r"for t in ([^;]+);", script)
    partitions = re.search(r"--partitions (\d+)", script)
    assert names and partitions, "topics: expected `for t in ...;` and `--partitions N`"
    return set(names.group(1).split()), int(partitions.group(1))


def _command_topics(command: list[str]) -> set[str]:
    """Values of every ``--...topic`` option of a command line."""
    return {
        value
        for option, value in itertools.pairwise(command)
        if option.startswith("--") and option.endswith("topic")
    }


def _drain_budget_s() -> float:
    """Longest shutdown drain: every ``_drain(timeout_s=...)`` call in worker/loop.py."""
    source = (ROOT / "worker" / "loop.py").read_text()
    timeouts = [float(t) for t in re.findall(r"self\._drain\(timeout_s=([0-9.]+)\)", source)]
    assert timeouts, "worker/loop.py: expected _drain(timeout_s=...) calls"
    return sum(timeouts)


def _exported_metrics() -> tuple[set[str], dict[str, set[str]]]:
    """Sample names the worker's registry can expose, and each family's label names."""
    from prometheus_client.metrics import MetricWrapperBase

    from worker.monitoring.metrics import Metrics

    metrics = Metrics()
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
    }
    samples = {
        family.name + suffix
        for family in metrics.registry.collect()
        for suffix in suffixes[family.type]
    }
    labels = {
        collector._name: set(collector._labelnames)
        for collector in vars(metrics).values()
        if isinstance(collector, MetricWrapperBase)
    }
    return samples, labels


def _family(sample: str, labels: dict[str, set[str]]) -> str:
    for suffix in ("_bucket", "_sum", "_count", "_total", "_created", ""):
        if sample.endswith(suffix) and sample.removesuffix(suffix) in labels:
            return sample.removesuffix(suffix)
    raise AssertionError(f"{sample}: no metric family")


# --- docker-compose.yml --------------------------------------------------------------------


class TestCompose:
    def test_services_and_profiles(self) -> None:
        """The stack has every service; only Prometheus and Grafana wait for a profile."""
        services = _services()
        assert set(services) >= {"kafka", "topics", "bundle-check", "worker", "solver", "fleet"}
        assert set(services) >= MONITORING
        for name, service in services.items():
            expected = ["monitoring"] if name in MONITORING else None
            assert service.get("profiles") == expected, name

    def test_images_are_official_pinned_or_built_here(self) -> None:
        """Images are official with a version tag; scm-worker services build deploy/Dockerfile."""
        for name, service in _services().items():
            if "image" in service:
                image, _, tag = service["image"].partition(":")
                assert image in OFFICIAL_IMAGES, name
                assert re.fullmatch(r"v?\d+(\.\d+)+", tag), f"{name}: unpinned tag {tag!r}"
            else:
                assert service["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}
        assert _services()["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert (DEPLOY / "Dockerfile").is_file()

    @pytest.mark.parametrize("service", _built_services())
    def test_built_service_commands_parse(self, service: str) -> None:
        """Each command our image runs is accepted by the real `scm-worker` parser."""
        command = [str(word) for word in _services()[service]["command"]]
        args = _parse(command)
        assert args.command == command[0]

    def test_solver_and_fleet_use_the_compose_broker(self) -> None:
        """The solver and the fleet talk to the broker the worker uses."""
        services = _services()
        broker = services["worker"]["environment"]["SCM_WORKER_BOOTSTRAP_SERVERS"]
        for name in ("solver", "fleet"):
            command = services[name]["command"]
            assert command[command.index("--bootstrap-servers") + 1] == broker, name
            assert "topics" in services[name]["depends_on"], name

    def test_worker_environment_is_real_configuration(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every SCM_WORKER_* variable is a setting, and together they make a valid config."""
        worker = _services()["worker"]
        environ = {name: str(value) for name, value in worker["environment"].items()}
        assert [p for p in map(_setting_problem, environ) if p] == []
        config = _config_from([str(w) for w in worker["command"]], environ, monkeypatch)
        assert config.bundle == Path(environ["SCM_WORKER_BUNDLE"])
        assert config.metrics_port == int(environ["SCM_WORKER_METRICS_PORT"])
        assert config.events_topic == environ["SCM_WORKER_EVENTS_TOPIC"]

    def test_mounts_exist_and_bundle_pins_match(self) -> None:
        """Bind mounts name paths of this repository, read-only; the digest pin is the bundle's."""
        from worker.bundle import verify_bundle

        services = _services()
        for name, service in services.items():
            for volume in service.get("volumes", []):
                host, _, rest = volume.partition(":")
                _, _, mode = rest.partition(":")
                assert host.startswith("./") and (ROOT / host).exists(), f"{name}: {host}"
                assert mode == "ro", f"{name}: {volume}"
        digest = services["worker"]["environment"]["SCM_WORKER_EXPECT_DIGEST"]
        bundle = services["worker"]["environment"]["SCM_WORKER_BUNDLE"]
        assert bundle.startswith("/bundles/")
        shipped = verify_bundle(SHIPPED_BUNDLES / bundle.removeprefix("/bundles/"))
        assert shipped.digest == digest
        assert digest in services["bundle-check"]["command"]
        assert bundle in services["bundle-check"]["command"]
        for name in ("worker", "bundle-check"):
            assert "./worker/data/bundles:/bundles:ro" in services[name]["volumes"], name

    def test_every_topic_used_is_created(self) -> None:
        """Topics the worker, solver and fleet read or write are all made by the topics service."""
        created, partitions = _created_topics()
        services = _services()
        used = {
            str(value)
            for name, value in services["worker"]["environment"].items()
            if name.endswith("_TOPIC")
        }
        for name in _built_services():
            used |= _command_topics([str(w) for w in services[name]["command"]])
        assert used >= {"features", "results", "solver-requests", "solver-answers"}
        assert used <= created, f"not created: {sorted(used - created)}"
        assert partitions >= 1
        assert services["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"

    def test_worker_stop_grace_exceeds_the_drain(self) -> None:
        """Compose waits longer than the worker's shutdown drain before it kills the worker."""
        grace = re.fullmatch(r"(\d+)s", _services()["worker"]["stop_grace_period"])
        assert grace and int(grace.group(1)) > _drain_budget_s()

    def test_prometheus_scrapes_the_worker(self) -> None:
        """Prometheus's config is the mounted file, and it scrapes the worker's metrics port."""
        services = _services()
        prometheus = services["prometheus"]
        assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
        assert (
            "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
            in prometheus["volumes"]
        )
        config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
        targets = [
            target
            for job in config["scrape_configs"]
            for static in job["static_configs"]
            for target in static["targets"]
        ]
        port = services["worker"]["environment"]["SCM_WORKER_METRICS_PORT"]
        assert targets == [f"worker:{port}"]

    def test_grafana_provisions_the_dashboard(self) -> None:
        """The provider reads the mounted dashboards; the data source is compose's Prometheus."""
        grafana = _services()["grafana"]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
        assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
        provisioning = DEPLOY / "grafana/provisioning"
        (provider,) = yaml.safe_load((provisioning / "dashboards/scm-worker.yml").read_text())[
            "providers"
        ]
        dashboards = ROOT / mounts[provider["options"]["path"]]
        assert (dashboards / "scm-worker.json").is_file()
        home = Path(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
        assert (ROOT / mounts[str(home.parent)] / home.name).is_file()
        (source,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())[
            "datasources"
        ]
        assert source["type"] == "prometheus"
        assert source["url"] == "http://prometheus:9090"
        assert not any("listen-address" in str(a) for a in _services()["prometheus"]["command"])
        uids = {p["datasource"]["uid"] for p in _panels(_dashboard()["panels"]) if "targets" in p}
        assert uids == {source["uid"]}


# --- deploy/Dockerfile ---------------------------------------------------------------------


class TestDockerfile:
    def test_multi_stage_on_slim(self) -> None:
        """A builder stage makes the venv; the runtime stage is python:3.11-slim and copies it."""
        stages = [line.split()[1:] for line in _dockerfile() if line.startswith("FROM ")]
        assert len(stages) >= 2
        assert stages[0][1:] == ["AS", "builder"]
        assert stages[-1][0] == "python:3.11-slim"
        assert any(line.startswith("COPY --from=builder") for line in _dockerfile())

    def test_runs_as_a_non_root_user(self) -> None:
        """The last USER is uid 10001, created in the image, and the Deployment agrees."""
        users = [line.split()[1] for line in _dockerfile() if line.startswith("USER ")]
        assert users and users[-1].split(":")[0] == "10001"
        assert any("useradd" in line and "--uid 10001" in line for line in _dockerfile())
        pod = _k8s("Deployment")["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsUser"] == 10001 and pod["runAsNonRoot"] is True

    def test_healthcheck_polls_healthz_on_the_metrics_port(self) -> None:
        """HEALTHCHECK calls /healthz with the standard library on the exposed metrics port."""
        (check,) = [line for line in _dockerfile() if line.startswith("HEALTHCHECK ")]
        assert "/healthz" in check and "urllib.request" in check
        assert "curl" not in check and "wget" not in check
        assert "SCM_WORKER_METRICS_PORT" in check
        env = " ".join(line for line in _dockerfile() if line.startswith("ENV "))
        port = re.search(r"SCM_WORKER_METRICS_PORT=(\d+)", env)
        assert port and f"EXPOSE {port.group(1)}" in _dockerfile()

    def test_entrypoint_is_the_console_script(self) -> None:
        """ENTRYPOINT is `scm-worker`, the script pyproject.toml installs."""
        assert 'ENTRYPOINT ["scm-worker"]' in _dockerfile()
        assert 'scm-worker = "worker.cli:run_main"' in (ROOT / "pyproject.toml").read_text()

    def test_bundles_ship_as_package_data_and_at_bundles(self) -> None:
        """The wheel carries worker/data/**, and the image has the bundles at /bundles."""
        assert '"data/**/*"' in (ROOT / "pyproject.toml").read_text()
        assert "COPY worker/data/bundles /bundles" in _dockerfile()

    def test_build_context_keeps_what_the_dockerfile_copies(self) -> None:
        """No .dockerignore pattern drops a file the Dockerfile copies from the context."""
        patterns = [
            line.strip()
            for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert ".venv" in patterns and ".git" in patterns
        sources = [
            source
            for line in _dockerfile()
            if line.startswith("COPY ") and "--from=" not in line
            for source in line.split()[1:-1]
        ]
        assert sources
        for source in sources:
            assert (ROOT / source).exists(), source
            for pattern in patterns:
                assert not fnmatch.fnmatch(source, pattern), f"{source} matches {pattern}"
                assert not source.startswith(pattern.rstrip("/") + "/"), f"{source}: {pattern}"


# --- deploy/k8s ----------------------------------------------------------------------------


class TestKubernetes:
    def test_kinds_present_and_namespace_agnostic(self) -> None:
        """The kustomization lists every manifest; none pins a namespace."""
        kinds = [doc["kind"] for doc in _k8s_documents()]
        assert sorted(kinds) == sorted(
            [
                "ConfigMap",
                "Deployment",
                "PodDisruptionBudget",
                "ScaledObject",
                "Secret",
                "Service",
                "TriggerAuthentication",
            ]
        )
        listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
        assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
        assert all("namespace" not in doc["metadata"] for doc in _k8s_documents())

    def test_probes_hit_healthz_and_readyz_on_the_metrics_port(self) -> None:
        """Liveness and startup probe /healthz, readiness /readyz, on SCM_WORKER_METRICS_PORT."""
        container = _container()
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        metrics_port = int(_literal_env()["SCM_WORKER_METRICS_PORT"])
        expected = {"livenessProbe": "/healthz", "startupProbe": "/healthz"}
        expected["readinessProbe"] = "/readyz"
        for probe, path in expected.items():
            get = container[probe]["httpGet"]
            assert get["path"] == path, probe
            assert ports.get(get["port"], get["port"]) == metrics_port, probe
        (service_port,) = _k8s("Service")["spec"]["ports"]
        assert ports.get(service_port["targetPort"], service_port["targetPort"]) == metrics_port

    def test_environment_and_policy_make_a_valid_config(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The Deployment's args, env and Secret give a WorkerConfig with the Kafka credentials."""
        env = _deployment_env()
        assert [p for p in map(_setting_problem, env) if p] == []
        secrets = _secret_values()
        environ = {
            name: item["value"]
            if "value" in item
            else secrets[item["valueFrom"]["secretKeyRef"]["key"]]
            for name, item in env.items()
        }
        args = list(_container()["args"])
        policy = tmp_path / "policy.json"
        policy.write_text(_policy_text())
        args[args.index("--policy") + 1] = str(policy)
        config = _config_from(args, environ, monkeypatch)
        assert {"sasl.username", "sasl.password", "security.protocol"} <= set(config.kafka_config)
        assert config.kafka_overrides()["sasl.password"] == secrets["sasl-password"]
        assert config.bundle == Path("/bundles/reference_robotics_seed7")
        assert config.policy_file == policy
        created, _ = _created_topics()
        topics = [config.input_topic, config.results_topic, config.solver_topic, config.dlq_topic]
        assert set(topics) <= created

    def test_policy_configmap_is_a_valid_policy_for_the_image_bundle(self) -> None:
        """The ConfigMap's policy parses with the policy model and pins the bundle in the image."""
        from worker.bundle import verify_bundle
        from worker.policy.check import check_bundle
        from worker.policy.model import parse_policy

        policy = parse_policy(_policy_text().encode(), "configmap-policy.yaml")
        path = Path(policy.bundle.path)
        assert path.parent == Path("/bundles"), "the Dockerfile copies bundles to /bundles"
        bundle = verify_bundle(SHIPPED_BUNDLES / path.name)
        assert policy.bundle.manifest_sha256 == bundle.digest
        check_bundle(policy, bundle, "configmap-policy.yaml")  # model digest and tau

    def test_policy_is_mounted_where_run_reads_it(self) -> None:
        """--policy names the ConfigMap's key inside its mount, mounted whole (hot reload)."""
        args = _container()["args"]
        policy = Path(args[args.index("--policy") + 1])
        spec = _k8s("Deployment")["spec"]["template"]["spec"]
        (volume,) = [v for v in spec["volumes"] if "configMap" in v]
        assert volume["configMap"]["name"] == _k8s("ConfigMap")["metadata"]["name"]
        (mount,) = [m for m in _container()["volumeMounts"] if m["name"] == volume["name"]]
        assert Path(mount["mountPath"]) == policy.parent and "subPath" not in mount
        assert policy.name in _k8s("ConfigMap")["data"]

    def test_secret_keys_are_consumed(self) -> None:
        """Every Secret key is read by the Deployment; every reference names an existing key."""
        secret = _k8s("Secret")
        keys = set(_secret_values())
        worker_refs = _deployment_secret_refs()
        keda_refs = _k8s("TriggerAuthentication")["spec"]["secretTargetRef"]
        for ref in worker_refs + keda_refs:
            assert ref["name"] == secret["metadata"]["name"], ref
            assert ref["key"] in keys, ref
        assert {ref["key"] for ref in worker_refs} == keys
        assert all("REPLACE-ME" in value for value in _secret_values().values())
        from_secrets = {name for name, item in _deployment_env().items() if "valueFrom" in item}
        assert from_secrets == {"SCM_WORKER_KAFKA_SASL_USERNAME", "SCM_WORKER_KAFKA_SASL_PASSWORD"}

    def test_scaledobject_follows_the_deployment_and_the_partitions(self) -> None:
        """KEDA scales this Deployment on its group's lag, never above the partition count."""
        scaled = _k8s("ScaledObject")
        env = _literal_env()
        assert scaled["spec"]["scaleTargetRef"]["name"] == _k8s("Deployment")["metadata"]["name"]
        (trigger,) = scaled["spec"]["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert meta["consumerGroup"] == env["SCM_WORKER_GROUP_ID"]
        assert meta["topic"] == env["SCM_WORKER_INPUT_TOPIC"]
        assert meta["bootstrapServers"] == env["SCM_WORKER_BOOTSTRAP_SERVERS"]
        assert meta["allowIdleConsumers"] == "false"
        assert int(meta["lagThreshold"]) > 0
        assert meta["offsetResetPolicy"] == "earliest"  # the worker's auto.offset.reset
        # KEDA spells librdkafka's mechanisms its own way; TLS follows security.protocol.
        keda_sasl = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256"}
        keda_sasl["SCRAM-SHA-512"] = "scram_sha512"
        assert meta["sasl"] == keda_sasl[env["SCM_WORKER_KAFKA_SASL_MECHANISMS"]]
        protocol = env["SCM_WORKER_KAFKA_SECURITY_PROTOCOL"]
        assert meta["tls"] == ("enable" if protocol.endswith("SSL") else "disable")
        auth = _k8s("TriggerAuthentication")["metadata"]["name"]
        assert trigger["authenticationRef"]["name"] == auth
        _, partitions = _created_topics()
        assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
        assert scaled["spec"]["maxReplicaCount"] <= partitions

    def test_selectors_match_the_pods(self) -> None:
        """The Deployment, PDB and Service select exactly the Deployment's pod labels."""
        deployment = _k8s("Deployment")
        pods = deployment["spec"]["template"]["metadata"]["labels"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pods.items()
        assert _k8s("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == selector
        assert _k8s("Service")["spec"]["selector"] == selector
        assert _k8s("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1

    def test_pod_is_locked_down_and_sized(self) -> None:
        """Non-root, read-only root file system, no privilege escalation, requests and limits."""
        container = _container()
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][kind]), kind

    def test_no_service_link_variables(self) -> None:
        """Service links are off: they would inject SCM_WORKER_* and SCM_WORKER_KAFKA_* names."""
        spec = _k8s("Deployment")["spec"]["template"]["spec"]
        assert spec["enableServiceLinks"] is False

    def test_lifecycle_fits_the_worker(self) -> None:
        """Grace outlasts the drain; KEDA owns replicas; rollouts never add a surge member."""
        deployment = _k8s("Deployment")
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > _drain_budget_s()
        assert "replicas" not in deployment["spec"]
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0


# --- Grafana dashboard -----------------------------------------------------------------------


def _expressions() -> list[tuple[str, str, str]]:
    """(panel title, PromQL, legend format) of every query in the dashboard."""
    return [
        (panel["title"], target["expr"], target.get("legendFormat", ""))
        for panel in _panels(_dashboard()["panels"])
        for target in panel.get("targets", [])
    ]


class TestDashboard:
    def test_every_metric_in_promql_is_exported(self) -> None:
        """Each scm_* name in the dashboard's queries is a sample of the worker's registry."""
        samples, _ = _exported_metrics()
        for title, expr, _ in _expressions():
            names = set(re.findall(r"\b(scm_[A-Za-z0-9_:]*)", expr))
            assert names, f"{title}: {expr} uses no scm_* metric"
            assert names <= samples, f"{title}: unknown {sorted(names - samples)}"

    def test_every_label_in_promql_exists(self) -> None:
        """Selector, grouping and legend labels are labels of the metrics the query uses."""
        _, labels = _exported_metrics()
        for title, expr, legend in _expressions():
            families = {_family(n, labels) for n in re.findall(r"\b(scm_[A-Za-z0-9_:]*)", expr)}
            allowed = set().union(*(labels[f] for f in families)) | TARGET_LABELS
            if "_bucket" in expr:
                allowed.add("le")
            used = set()
            for selector in re.findall(r"scm_[A-Za-z0-9_:]*\{([^}]*)\}", expr):
                used |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", selector))
            for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
                used |= {label.strip() for label in group.split(",") if label.strip()}
            used |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
            assert used <= allowed, f"{title}: unknown labels {sorted(used - allowed)}"

    def test_required_metrics_are_shown(self) -> None:
        """Messages, routes, dead letters, lag, histograms, drift, in flight, paused: all there."""
        _, labels = _exported_metrics()
        shown = {
            _family(name, labels)
            for _, expr, _ in _expressions()
            for name in re.findall(r"\b(scm_[A-Za-z0-9_:]*)", expr)
        }
        assert shown >= DASHBOARD_REQUIRED

    def test_dashboard_is_well_formed(self) -> None:
        """Unique panel ids, a stable uid, and a reference ID on every query."""
        dashboard = _dashboard()
        ids = [panel["id"] for panel in _panels(dashboard["panels"])]
        assert len(ids) == len(set(ids))
        assert dashboard["uid"] == "scm-worker"
        for panel in _panels(dashboard["panels"]):
            refs = [target["refId"] for target in panel.get("targets", [])]
            assert len(refs) == len(set(refs)), panel["title"]


# --- deploy/README.md ----------------------------------------------------------------------


class TestReadme:
    @pytest.mark.parametrize(
        "argv", _readme_commands(), ids=lambda argv: " ".join(argv[:1]) or "bare"
    )
    def test_readme_commands_parse(self, argv: list[str]) -> None:
        """Every `scm-worker` line in deploy/README.md is accepted by the real parser."""
        _parse(argv)

    def test_readme_shows_the_compose_commands(self) -> None:
        """The README's commands are exactly those of the built compose services."""
        services = _services()
        compose = [[str(w) for w in services[name]["command"]] for name in _built_services()]
        assert sorted(map(tuple, compose)) == sorted(map(tuple, _readme_commands()))

    def test_readme_shows_the_deploy_commands(self) -> None:
        """Compose, the monitoring profile and kustomize are shown as tests assume them."""
        text = _readme()
        for command in (
            "docker compose up -d",
            "docker compose --profile monitoring up -d",
            "kubectl apply -k deploy/k8s",
            "docker build -f deploy/Dockerfile",
        ):
            assert command in text, command

    def test_readme_scaling_rule_matches_the_files(self) -> None:
        """The README's partition count and replica ceiling are the files' numbers."""
        text = _readme()
        _, partitions = _created_topics()
        assert re.findall(r"with (\d+) partitions each", text) == [str(partitions)]
        ceiling = _k8s("ScaledObject")["spec"]["maxReplicaCount"]
        assert f"`maxReplicaCount: {ceiling}`" in text
        assert f"with {partitions} partitions, {ceiling} workers is the ceiling" in text

    def test_readme_names_every_deploy_file(self) -> None:
        """Each file under deploy/ is described in the README's table (directly or its folder)."""
        named = set(re.findall(r"^\| `([^`]+)` \|", _readme(), flags=re.MULTILINE))
        for path in DEPLOY.rglob("*"):
            relative = path.relative_to(DEPLOY).as_posix()
            if path.is_dir() or relative == "README.md":
                continue
            assert any(
                relative == name or (name.endswith("/") and relative.startswith(name))
                for name in named
            ), f"deploy/{relative} is not in deploy/README.md"
