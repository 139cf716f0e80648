"""Checks infra/: renders every kustomize overlay offline, validates each object against the
Kubernetes schemas, and checks what the schemas cannot: probes, limits, non-root, grace periods
above the worker's drain, autoscaling and budgets that point at real Deployments.

Usage: infra_check.py <infra dir> <overlay>...   (run by tests/infra.rs; exits 1 on a finding)
Environment: KUBECTL (default kubectl), INFRATOOLS (the venv's bin: kubernetes-validate, hadolint).
"""

import os
import subprocess
import sys

import yaml

K8S_VERSION = "1.30.0"
# CustomResourceDefinitions whose schemas are not shipped: kubernetes-validate knows only the
# built-in kinds. They get the structural checks below instead (check_scaled_object).
CRD_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("monitoring.coreos.com/v1", "PodMonitor")}
DEFAULT_GRACE_MS = 25_000  # workers::DEFAULT_SHUTDOWN_GRACE
# The kubelet's countdown starts with preStop; the drain starts with it too (/drain), so the
# grace period must cover the worker's own grace plus this margin.
MARGIN_S = 5

findings = []


def fail(where, what):
    findings.append(f"{where}: {what}")


def render(infra, overlay):
    kubectl = os.environ.get("KUBECTL", "kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", os.path.join(infra, "k8s", overlay)],
        check=True, capture_output=True, text=True,
    ).stdout
    return out, [d for d in yaml.safe_load_all(out) if d]


def validate(overlay, text):
    tools = os.environ.get("INFRATOOLS", "")
    path = f"/tmp/pysaas-infra-{os.getpid()}-{overlay.replace('/', '-')}.yaml"
    with open(path, "w") as f:
        f.write(text)
    try:
        run = subprocess.run(
            [os.path.join(tools, "kubernetes-validate"), "--strict", "-k", K8S_VERSION, path],
            capture_output=True, text=True,
        )
    finally:
        os.remove(path)
    lines = (run.stdout + run.stderr).splitlines()
    passed = sum(1 for l in lines if l.startswith("INFO") and " passed " in l)
    for line in lines:
        if line.startswith("INFO"):
            continue
        if line.startswith("WARN") and "Couldn't find schema for kind" in line and any(
            f"kind {k} with api version {v}" in line for v, k in CRD_KINDS
        ):
            continue
        fail(overlay, f"kubernetes-validate: {line}")
    if run.returncode != 0:
        fail(overlay, f"kubernetes-validate exited {run.returncode}")
    return passed


def containers(pod):
    return [("init " + c["name"], c) for c in pod.get("initContainers", [])] + [
        (c["name"], c) for c in pod["containers"]
    ]


def is_pysaas(obj):
    return obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "pysaas"


def worker_grace_ms(container, config_toml):
    for env in container.get("env", []):
        if env["name"] == "PYSAAS_SHUTDOWN_GRACE_MS":
            return int(env["value"])
    return config_toml.get("worker", {}).get("shutdown_grace_ms", DEFAULT_GRACE_MS)


def check_deployment(where, dep, config_toml):
    pod = dep["spec"]["template"]["spec"]
    pod_sc = pod.get("securityContext", {})
    for name, c in containers(pod):
        at = f"{where} container {name}"
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in res.get(kind, {}):
                    fail(at, f"no {kind}.{r}")
        sc = c.get("securityContext", {})
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        if non_root is not True or uid in (None, 0):
            fail(at, f"not non-root (runAsNonRoot={non_root}, runAsUser={uid})")
        if sc.get("allowPrivilegeEscalation") is not False:
            fail(at, "allowPrivilegeEscalation is not false")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            fail(at, "capabilities not dropped")
        if is_pysaas(dep) and sc.get("readOnlyRootFilesystem") is not True:
            fail(at, "root filesystem not read-only")
        if not name.startswith("init "):
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    fail(at, f"no {probe}")
    if not is_pysaas(dep):
        return
    labels = dep["spec"]["template"]["metadata"]["labels"]
    if labels.get("app.kubernetes.io/component") == "worker":
        main = pod["containers"][0]
        grace_ms = worker_grace_ms(main, config_toml)
        period = pod.get("terminationGracePeriodSeconds", 30)
        if period * 1000 < grace_ms + MARGIN_S * 1000:
            fail(where, f"terminationGracePeriodSeconds {period} s is not above the worker's "
                        f"shutdown grace {grace_ms} ms + {MARGIN_S} s")
        command = main.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        if not any(c.startswith("http://127.0.0.1:") and c.endswith("/drain") for c in command):
            fail(where, "preStop does not stop claiming (exec pysaas probe http://127.0.0.1:…/drain)")
        if "replicas" in dep["spec"]:
            fail(where, "sets replicas: `kubectl apply` would reset what the autoscaler set")
        if main.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
            fail(where, "readiness is not /readyz (false while draining)")
    if not any(c["name"] == "migrate" and c.get("args") == ["migrate"]
               for c in pod.get("initContainers", [])):
        fail(where, "no init container applying migrations before the role starts")


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def check_scaled_object(where, so, deployments):
    spec = so.get("spec", {})
    target = spec.get("scaleTargetRef", {}).get("name")
    if target not in deployments:
        fail(where, f"scaleTargetRef {target} is no Deployment here")
    lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if not 1 <= lo <= hi:
        fail(where, f"replica bounds {lo}..{hi}")
    triggers = spec.get("triggers", [])
    if not triggers:
        fail(where, "no triggers")
    for t in triggers:
        meta = t.get("metadata", {})
        if t.get("type") != "prometheus" or not meta.get("query") or not meta.get("threshold"):
            fail(where, f"trigger {t} lacks a prometheus query and threshold")
        elif f'queue="{target.removeprefix("pysaas-worker-")}"' not in meta["query"]:
            fail(where, "trigger query is not about the pool's own queue")
    down = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get(
        "behavior", {}).get("scaleDown", {})
    if down.get("stabilizationWindowSeconds", 0) < 60:
        fail(where, "scale-down not stabilised")


def check_hpa(where, hpa, deployments):
    spec = hpa["spec"]
    target = spec["scaleTargetRef"]["name"]
    if target not in deployments:
        fail(where, f"scaleTargetRef {target} is no Deployment here")
    if not 1 <= spec.get("minReplicas", 1) <= spec["maxReplicas"]:
        fail(where, "replica bounds")
    names = [m.get("external", {}).get("metric", {}).get("name") for m in spec.get("metrics", [])]
    if "pysaas_queue_backlog" not in names:
        fail(where, f"no queue-depth metric (metrics {names})")
    pool = target.removeprefix("pysaas-worker-")
    for m in spec["metrics"]:
        sel = m["external"]["metric"].get("selector", {}).get("matchLabels", {})
        if sel.get("queue") != pool:
            fail(where, f"metric {m['external']['metric']['name']} not selected to queue {pool}")
    down = spec.get("behavior", {}).get("scaleDown", {})
    if down.get("stabilizationWindowSeconds", 300) < 60:
        fail(where, "scale-down not stabilised")


def check_overlay(infra, overlay):
    text, objs = render(infra, overlay)
    passed = validate(overlay, text)
    by_kind = {}
    for o in objs:
        by_kind.setdefault(o["kind"], []).append(o)
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    config_toml = {}
    for cm in by_kind.get("ConfigMap", []):
        if "pysaas.toml" in cm.get("data", {}):
            import tomllib
            config_toml = tomllib.loads(cm["data"]["pysaas.toml"])
    for name, dep in deployments.items():
        check_deployment(f"{overlay} Deployment {name}", dep, config_toml)
    workers = [n for n, d in deployments.items()
               if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "worker"]
    pools = {d["spec"]["template"]["metadata"]["labels"].get("pysaas.dev/pool") for n, d in deployments.items() if n in workers}
    for pool in ("default", "billing", "notifications", "profiles"):
        if pool not in pools:
            fail(overlay, f"no worker Deployment for the {pool} pool")
    scaled = {}
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        check_hpa(f"{overlay} HPA {hpa['metadata']['name']}", hpa, deployments)
        scaled[hpa["spec"]["scaleTargetRef"]["name"]] = "HPA"
    for so in by_kind.get("ScaledObject", []):
        check_scaled_object(f"{overlay} ScaledObject {so['metadata']['name']}", so, deployments)
        target = so["spec"]["scaleTargetRef"]["name"]
        if target in scaled:
            fail(overlay, f"{target} has both an HPA and a ScaledObject")
        scaled[target] = "ScaledObject"
    for w in workers:
        if w not in scaled:
            fail(overlay, f"worker Deployment {w} is not autoscaled")
    for pm in by_kind.get("PodMonitor", []):
        selector = pm["spec"].get("selector", {})
        ports = [e.get("port") for e in pm["spec"].get("podMetricsEndpoints", [])]
        for name, d in deployments.items():
            if not is_pysaas(d):
                continue
            pod = d["spec"]["template"]
            if not selects(selector, pod["metadata"]["labels"]):
                fail(overlay, f"PodMonitor {pm['metadata']['name']} does not select {name}")
            names = [p.get("name") for p in pod["spec"]["containers"][0].get("ports", [])]
            if not set(ports) & set(names):
                fail(overlay, f"PodMonitor {pm['metadata']['name']} scrapes no port of {name} ({ports} vs {names})")
    sched = deployments.get("pysaas-scheduler")
    if not sched or sched["spec"].get("replicas", 1) < 2:
        fail(overlay, "the scheduler does not run 2 replicas (leader election)")
    budgeted = set()
    for pdb in by_kind.get("PodDisruptionBudget", []):
        hits = [n for n, d in deployments.items()
                if selects(pdb["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
        if not hits:
            fail(overlay, f"PodDisruptionBudget {pdb['metadata']['name']} selects no pod")
        budgeted.update(hits)
    for name in ["pysaas-scheduler", "pysaas-api", *workers]:
        if name not in budgeted:
            fail(overlay, f"{name} has no PodDisruptionBudget")
    policies = by_kind.get("NetworkPolicy", [])
    for name, d in deployments.items():
        if not is_pysaas(d):
            continue
        labels = d["spec"]["template"]["metadata"]["labels"]
        types = set()
        for p in policies:
            if selects(p["spec"]["podSelector"], labels) and not p["spec"]["podSelector"].get("matchExpressions"):
                types.update(p["spec"].get("policyTypes", []))
        if types != {"Ingress", "Egress"}:
            fail(overlay, f"{name} is not covered by a default-deny ingress and egress policy")
    namespaces = {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"}
    if len(namespaces) > 1:
        fail(overlay, f"objects in different namespaces: {sorted(map(str, namespaces))}")
    print(f"{overlay}: {len(objs)} objects, {passed} schema-valid")
    return len(objs)


def check_dockerfile(infra):
    tools = os.environ.get("INFRATOOLS", "")
    path = os.path.join(infra, "Dockerfile")
    run = subprocess.run([os.path.join(tools, "hadolint"), "--no-color", path], capture_output=True, text=True)
    if run.returncode != 0:
        fail("infra/Dockerfile", "hadolint: " + (run.stdout + run.stderr).strip())
    users = [l.split()[1] for l in open(path) if l.startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        fail("infra/Dockerfile", f"the last USER is not a non-root uid ({users})")


def main():
    infra, overlays = sys.argv[1], sys.argv[2:]
    check_dockerfile(infra)
    for overlay in overlays:
        check_overlay(infra, overlay)
    for f in findings:
        print("FINDING", f)
    sys.exit(1 if findings else 0)


if __name__ == "__main__":
    main()
