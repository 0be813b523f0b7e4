#!/usr/bin/env python3
"""Checks config/deploy/ without a cluster: every manifest against a schema of our own (the
fields of the Kubernetes API objects it uses, required fields, kinds and apiVersions, names,
references between fields), the ClusterRole against the resources the code reads, and the
Grafana dashboard (grafana/kdp-dashboard.json) against the metrics kdp-control serves.

The RBAC check reads the code, not a list kept beside it: the resources of kdp_resources() in
control/k8s/reflector.cc must be granted exactly list and watch, every API path the control
plane names elsewhere must be granted some verb, and the role may grant nothing else (Events:
create and patch). So adding a resource to the code without the role, or widening the role,
fails here. kdp-cni's own lookups (cni-shim/pod_info.cc) use the kubeconfig named in its network
config, not this service account, and are not part of the role.

Usage: manifests_test.py SOURCE_ROOT. Python 3 and PyYAML (python3-yaml).
"""

import json
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
DEPLOY = ROOT / "config" / "deploy"
NAMESPACE = "kdp-system"
FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
    return cond


# ----------------------------------------------------------------------------- the schema

# (apiVersion, kind) -> namespaced?
KINDS = {
    ("v1", "Namespace"): False,
    ("v1", "ServiceAccount"): True,
    ("v1", "ConfigMap"): True,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): False,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): False,
    ("apps/v1", "DaemonSet"): True,
}

# Allowed fields per object type (the Kubernetes API reference, v1.28), for the fields these
# manifests can use. A key outside its set is a typo the API server would reject (strict field
# validation, kubectl's default since 1.27).
FIELDS = {
    "ObjectMeta": {"name", "namespace", "labels", "annotations"},
    "DaemonSetSpec": {"selector", "template", "updateStrategy", "minReadySeconds",
                      "revisionHistoryLimit"},
    "DaemonSetUpdateStrategy": {"type", "rollingUpdate"},
    "RollingUpdateDaemonSet": {"maxUnavailable", "maxSurge"},
    "PodTemplateSpec": {"metadata", "spec"},
    "PodSpec": {"serviceAccountName", "priorityClassName", "hostNetwork", "hostPID", "dnsPolicy",
                "terminationGracePeriodSeconds", "tolerations", "nodeSelector", "initContainers",
                "containers", "volumes", "automountServiceAccountToken"},
    "Container": {"name", "image", "imagePullPolicy", "command", "args", "env", "envFrom",
                  "securityContext", "resources", "ports", "startupProbe", "livenessProbe",
                  "readinessProbe", "volumeMounts", "lifecycle", "workingDir"},
    "EnvVar": {"name", "value", "valueFrom"},
    "EnvVarSource": {"fieldRef", "configMapKeyRef", "secretKeyRef", "resourceFieldRef"},
    "EnvFromSource": {"configMapRef", "secretRef", "prefix"},
    "SecurityContext": {"privileged", "allowPrivilegeEscalation", "readOnlyRootFilesystem",
                        "capabilities", "runAsUser", "runAsGroup", "runAsNonRoot"},
    "ResourceRequirements": {"requests", "limits"},
    "ContainerPort": {"name", "containerPort", "protocol", "hostPort", "hostIP"},
    "Probe": {"exec", "httpGet", "tcpSocket", "initialDelaySeconds", "periodSeconds",
              "timeoutSeconds", "successThreshold", "failureThreshold"},
    "HTTPGetAction": {"host", "path", "port", "scheme", "httpHeaders"},
    "ExecAction": {"command"},
    "VolumeMount": {"name", "mountPath", "readOnly", "mountPropagation", "subPath"},
    "Volume": {"name", "hostPath", "emptyDir", "configMap", "secret"},
    "HostPathVolumeSource": {"path", "type"},
    "EmptyDirVolumeSource": {"medium", "sizeLimit"},
    "ConfigMapVolumeSource": {"name", "items", "defaultMode", "optional"},
    "Toleration": {"key", "operator", "value", "effect", "tolerationSeconds"},
    "PolicyRule": {"apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"},
    "RoleRef": {"apiGroup", "kind", "name"},
    "Subject": {"kind", "name", "namespace", "apiGroup"},
}

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")
HOST_PATH_TYPES = {"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                   "CharDevice", "BlockDevice"}
FIELD_PATHS = {"metadata.name", "metadata.namespace", "spec.nodeName", "spec.serviceAccountName",
               "status.hostIP", "status.podIP", "status.podIPs", "status.hostIPs"}
RESOURCE_NAMES = {"cpu", "memory", "ephemeral-storage", "hugepages-2Mi", "hugepages-1Gi"}


def fields(obj, typ, where):
    if not check(isinstance(obj, dict), f"{where}: a {typ} must be a map"):
        return {}
    for k in obj:
        check(k in FIELDS[typ], f"{where}: unknown field \"{k}\" in a {typ}")
    return obj


def required(obj, key, where):
    return check(key in obj and obj[key] not in (None, "", [], {}), f"{where}: {key} is required")


def check_meta(md, where, namespaced):
    fields(md, "ObjectMeta", where + ".metadata")
    if required(md, "name", where + ".metadata"):
        check(re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", md["name"]) is not None,
              f"{where}: metadata.name \"{md['name']}\" is not a DNS-1123 subdomain")
    if namespaced:
        check(md.get("namespace") == NAMESPACE, f"{where}: must be in namespace {NAMESPACE}")
    else:
        check("namespace" not in md, f"{where}: a cluster-scoped object has no namespace")


def check_probe(p, where):
    fields(p, "Probe", where)
    handlers = [h for h in ("exec", "httpGet", "tcpSocket") if h in p]
    check(len(handlers) == 1, f"{where}: exactly one handler (exec, httpGet, tcpSocket)")
    if "httpGet" in p:
        g = fields(p["httpGet"], "HTTPGetAction", where + ".httpGet")
        required(g, "port", where + ".httpGet")
        check(str(g.get("path", "/")).startswith("/"), f"{where}: httpGet.path must start with /")
    if "exec" in p:
        e = fields(p["exec"], "ExecAction", where + ".exec")
        check(isinstance(e.get("command"), list) and e["command"], f"{where}: exec.command")
    for k in ("periodSeconds", "timeoutSeconds", "failureThreshold", "initialDelaySeconds"):
        if k in p:
            check(isinstance(p[k], int) and p[k] >= 0, f"{where}: {k} must be an integer")


def check_container(c, where, volumes):
    fields(c, "Container", where)
    if required(c, "name", where):
        check(DNS_LABEL.match(c["name"]) is not None, f"{where}: name is not a DNS-1123 label")
    required(c, "image", where)
    check(c.get("imagePullPolicy", "IfNotPresent") in ("Always", "IfNotPresent", "Never"),
          f"{where}: imagePullPolicy")
    for key in ("command", "args"):
        if key in c:
            check(isinstance(c[key], list) and all(isinstance(a, str) for a in c[key]),
                  f"{where}: {key} must be a list of strings")
    for i, e in enumerate(c.get("env", [])):
        w = f"{where}.env[{i}]"
        fields(e, "EnvVar", w)
        required(e, "name", w)
        check(("value" in e) != ("valueFrom" in e), f"{w}: exactly one of value, valueFrom")
        if "value" in e:
            check(isinstance(e["value"], str), f"{w}: value must be a string (quote numbers)")
        if "valueFrom" in e:
            vf = fields(e["valueFrom"], "EnvVarSource", w + ".valueFrom")
            if "fieldRef" in vf:
                check(vf["fieldRef"].get("fieldPath") in FIELD_PATHS,
                      f"{w}: fieldRef.fieldPath {vf['fieldRef'].get('fieldPath')} not supported")
    for i, e in enumerate(c.get("envFrom", [])):
        fields(e, "EnvFromSource", f"{where}.envFrom[{i}]")
    if "securityContext" in c:
        fields(c["securityContext"], "SecurityContext", where + ".securityContext")
    res = fields(c.get("resources", {}), "ResourceRequirements", where + ".resources")
    for part in ("requests", "limits"):
        for name, q in res.get(part, {}).items():
            check(name in RESOURCE_NAMES, f"{where}: resources.{part}: unknown resource {name}")
            check(isinstance(q, str) and QUANTITY.match(q) is not None,
                  f"{where}: resources.{part}.{name}: \"{q}\" is not a quantity (quote it)")
    for name in res.get("requests", {}):
        if name.startswith("hugepages-"):
            # The API server refuses hugepage requests that differ from their limits.
            check(res.get("limits", {}).get(name) == res["requests"][name],
                  f"{where}: {name} requests must equal limits")
    for i, p in enumerate(c.get("ports", [])):
        w = f"{where}.ports[{i}]"
        fields(p, "ContainerPort", w)
        check(isinstance(p.get("containerPort"), int) and 0 < p["containerPort"] < 65536,
              f"{w}: containerPort 1..65535")
        check(p.get("protocol", "TCP") in ("TCP", "UDP", "SCTP"), f"{w}: protocol")
        if "name" in p:
            check(len(p["name"]) <= 15 and DNS_LABEL.match(p["name"]) is not None,
                  f"{w}: port name is an IANA_SVC_NAME")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if probe in c:
            check_probe(c[probe], f"{where}.{probe}")
    paths = set()
    for i, m in enumerate(c.get("volumeMounts", [])):
        w = f"{where}.volumeMounts[{i}]"
        fields(m, "VolumeMount", w)
        check(m.get("name") in volumes, f"{w}: volume \"{m.get('name')}\" is not defined")
        check(str(m.get("mountPath", "")).startswith("/"), f"{w}: mountPath must be absolute")
        check(m.get("mountPath") not in paths, f"{w}: mountPath {m.get('mountPath')} twice")
        paths.add(m.get("mountPath"))
        check(m.get("mountPropagation", "None") in ("None", "HostToContainer", "Bidirectional"),
              f"{w}: mountPropagation")


def check_daemonset(ds, where):
    spec = fields(ds.get("spec"), "DaemonSetSpec", where + ".spec")
    required(spec, "selector", where + ".spec")
    required(spec, "template", where + ".spec")
    tmpl = fields(spec.get("template", {}), "PodTemplateSpec", where + ".spec.template")
    labels = tmpl.get("metadata", {}).get("labels", {})
    for k, v in spec.get("selector", {}).get("matchLabels", {}).items():
        check(labels.get(k) == v, f"{where}: selector {k}={v} does not match the template labels")
    us = fields(spec.get("updateStrategy", {}), "DaemonSetUpdateStrategy", where + ".updateStrategy")
    check(us.get("type") == "RollingUpdate", f"{where}: updateStrategy.type RollingUpdate")
    ru = fields(us.get("rollingUpdate", {}), "RollingUpdateDaemonSet", where + ".rollingUpdate")
    check(ru.get("maxUnavailable") == 1, f"{where}: rollingUpdate.maxUnavailable 1")

    pod = fields(tmpl.get("spec", {}), "PodSpec", where + ".spec.template.spec")
    check(pod.get("hostNetwork") is True, f"{where}: hostNetwork: true")
    check(pod.get("dnsPolicy", "ClusterFirst") in ("ClusterFirst", "ClusterFirstWithHostNet",
                                                   "Default", "None"), f"{where}: dnsPolicy")
    tol = pod.get("tolerations", [])
    for i, t in enumerate(tol):
        fields(t, "Toleration", f"{where}.tolerations[{i}]")
    check(any(t.get("operator") == "Exists" and "key" not in t and "effect" not in t for t in tol),
          f"{where}: a toleration of every taint (operator: Exists, no key, no effect)")
    volumes = {}
    for i, v in enumerate(pod.get("volumes", [])):
        w = f"{where}.volumes[{i}]"
        fields(v, "Volume", w)
        required(v, "name", w)
        check(v.get("name") not in volumes, f"{w}: volume name {v.get('name')} twice")
        sources = [s for s in ("hostPath", "emptyDir", "configMap", "secret") if s in v]
        check(len(sources) == 1, f"{w}: exactly one volume source")
        if "hostPath" in v:
            hp = fields(v["hostPath"], "HostPathVolumeSource", w + ".hostPath")
            check(str(hp.get("path", "")).startswith("/"), f"{w}: hostPath.path must be absolute")
            check(hp.get("type", "") in HOST_PATH_TYPES, f"{w}: hostPath.type")
        if "emptyDir" in v:
            fields(v["emptyDir"], "EmptyDirVolumeSource", w + ".emptyDir")
        if "configMap" in v:
            fields(v["configMap"], "ConfigMapVolumeSource", w + ".configMap")
        volumes[v.get("name")] = v
    containers = pod.get("containers", [])
    inits = pod.get("initContainers", [])
    check(containers, f"{where}: at least one container")
    names = [c.get("name") for c in containers + inits]
    check(len(names) == len(set(names)), f"{where}: container names are unique")
    used = set()
    for kind, cs in (("containers", containers), ("initContainers", inits)):
        for i, c in enumerate(cs):
            check_container(c, f"{where}.{kind}[{i}]({c.get('name')})", volumes)
            used.update(m.get("name") for m in c.get("volumeMounts", []))
            if kind == "initContainers":
                for p in ("livenessProbe", "readinessProbe", "startupProbe"):
                    check(p not in c, f"{where}: init container {c.get('name')} may not have {p}")
    for name in volumes:
        check(name in used, f"{where}: volume {name} is mounted by no container")
    return pod, volumes


# ----------------------------------------------------------------------------- kdp's own rules

def check_kdp_daemonset(pod, volumes, configmaps):
    by_name = {c["name"]: c for c in pod.get("containers", [])}
    inits = {c["name"]: c for c in pod.get("initContainers", [])}
    dp, ctl = by_name.get("dataplane"), by_name.get("control")
    if not (check(dp is not None, "DaemonSet: a container named dataplane")
            and check(ctl is not None, "DaemonSet: a container named control")
            and check("install-cni" in inits, "DaemonSet: an init container install-cni")):
        return
    check(dp.get("securityContext", {}).get("privileged") is True, "dataplane: privileged")
    res = dp.get("resources", {})
    check(any(k.startswith("hugepages-") for k in res.get("limits", {})),
          "dataplane: hugepage resources")
    host_paths = {}
    for m in dp.get("volumeMounts", []):
        v = volumes.get(m["name"], {})
        if "hostPath" in v:
            host_paths[v["hostPath"]["path"]] = m["mountPath"]
        if v.get("emptyDir", {}).get("medium", "").startswith("HugePages"):
            host_paths["hugepages"] = m["mountPath"]
    for need in ("hugepages", "/dev/vfio", "/run/kdp", "/var/run/dpdk", "/var/lib/kdp",
                 "/etc/cni/net.d", "/opt/cni/bin", "/var/run/netns"):
        check(need in host_paths, f"dataplane: mounts {need}")
    init_paths = {volumes[m["name"]]["hostPath"]["path"]
                  for m in inits["install-cni"].get("volumeMounts", [])
                  if "hostPath" in volumes.get(m["name"], {})}
    check("/opt/cni/bin" in init_paths, "install-cni: mounts /opt/cni/bin")
    check(ctl.get("command", [""])[0].endswith("control.sh"), "control: runs scripts/control.sh")
    env = {e["name"]: e.get("value") for e in ctl.get("env", [])}
    metrics_port = int(str(env.get("KDP_METRICS_BIND_ADDRESS", ":10249")).rsplit(":", 1)[1])
    check(str(env.get("KDP_HEALTHZ_BIND_ADDRESS", "")).endswith(":10256"),
          "control: kube-proxy's node health on port 10256")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        g = ctl.get(probe, {}).get("httpGet", {})
        check(g.get("path") == path and g.get("port") == metrics_port,
              f"control: {probe} is GET {path} on the metrics port {metrics_port}")
    for c in list(by_name.values()) + list(inits.values()):
        cmd = c.get("command", [""])[0]
        if cmd.startswith("/usr/lib/kdp/"):
            script = DEPLOY / "scripts" / pathlib.Path(cmd).name
            check(script.is_file(), f"{c['name']}: {cmd} is not in config/deploy/scripts/")
    cm = configmaps.get("kdp-config", {}).get("data", {})
    check("node.yaml" in cm, "ConfigMap kdp-config: node.yaml")
    # One config for every node: what differs between nodes comes from the Node object and the
    # kernel (kdp-control node-config), never from the shared file.
    node_yaml = yaml.safe_load(cm.get("node.yaml", "")) or {}
    for key in ("name", "ip", "pod_cidr", "mac"):
        check(key not in node_yaml.get("node", {}),
              f"ConfigMap kdp-config: node.yaml sets node.{key}, which differs per node")
    check("interface" in node_yaml.get("uplink", {}) or "devargs" in node_yaml.get("uplink", {}),
          "ConfigMap kdp-config: node.yaml names the uplink")
    check("KDP_API_SERVER" in configmaps.get("kubernetes-services-endpoint", {}).get("data", {}),
          "ConfigMap kubernetes-services-endpoint: KDP_API_SERVER, the API server's real address")
    try:
        conf = json.loads(cm.get("10-kdp.conflist", ""))
        check(any(p.get("type") == "kdp-cni" for p in conf.get("plugins", [])),
              "ConfigMap kdp-config: the conflist runs kdp-cni")
        check(conf.get("name") and conf.get("cniVersion"), "conflist: name and cniVersion")
    except json.JSONDecodeError as e:
        check(False, f"ConfigMap kdp-config: 10-kdp.conflist is not JSON: {e}")
    for name, c in list(by_name.items()):
        refs = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
        for r in refs:
            check(r in configmaps, f"{name}: envFrom names ConfigMap {r}, which is not shipped")


# ----------------------------------------------------------------------------- RBAC vs code

def group_resource(path):
    """/api/v1/pods -> ("", "pods"); /apis/discovery.k8s.io/v1/endpointslices -> (group, res);
    namespaced paths /api/v1/namespaces/{}/pods/{} -> ("", "pods")."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if parts[0] == "api":
        group, rest = "", parts[2:]
    else:
        group, rest = parts[1], parts[3:]
    if len(rest) >= 3 and rest[0] == "namespaces":
        rest = rest[2:]
    return group, rest[0] if rest else ""


def code_resources():
    text = (ROOT / "control" / "k8s" / "reflector.cc").read_text()
    body = re.search(r"kdp_resources\(\)\s*\{(.*?)\n\}", text, re.S)
    check(body is not None, "reflector.cc: kdp_resources() not found")
    watched = set()
    for path in re.findall(r'"(/apis?/[^"]+)"', body.group(1) if body else ""):
        watched.add(group_resource(path))
    check(watched, "reflector.cc: kdp_resources() lists no API paths")
    # Every other API path the control plane names (Events, lookups): granted some verb.
    named = set()
    for f in sorted((ROOT / "control").rglob("*")):
        if f.suffix in (".cc", ".h"):
            for path in re.findall(r'"(/apis?/[a-zA-Z0-9./{}_-]+)"', f.read_text()):
                gr = group_resource(path)
                if gr[1] and "{" not in gr[1]:
                    named.add((gr, str(f.relative_to(ROOT))))
    return watched, named


def role_grants(role):
    grants = {}
    for i, r in enumerate(role.get("rules", [])):
        fields(r, "PolicyRule", f"ClusterRole.rules[{i}]")
        check("resourceNames" not in r and "nonResourceURLs" not in r,
              f"ClusterRole.rules[{i}]: no resourceNames or nonResourceURLs")
        for g in r.get("apiGroups", []):
            for res in r.get("resources", []):
                check(g != "*" and res != "*", f"ClusterRole.rules[{i}]: no wildcards")
                grants.setdefault((g, res), set()).update(r.get("verbs", []))
    return grants


def check_rbac(role, binding, accounts, ds):
    grants = role_grants(role)
    watched, named = code_resources()
    for gr in sorted(watched):
        check(grants.get(gr) == {"list", "watch"},
              f"ClusterRole: {gr[0] or 'core'}/{gr[1]} is read by kdp_resources(): grant exactly "
              f"list, watch (granted: {sorted(grants.get(gr, []))})")
    for gr, where in sorted(named):
        check(gr in grants, f"ClusterRole: {where} names {gr[0] or 'core'}/{gr[1]}, not granted")
    events = {gr: v for gr, v in grants.items() if gr[1] == "events"}
    check(events and all(v == {"create", "patch"} for v in events.values()),
          "ClusterRole: events get exactly create, patch")
    for gr, verbs in grants.items():
        check(gr in watched or gr[1] == "events",
              f"ClusterRole: grants {sorted(verbs)} on {gr[0] or 'core'}/{gr[1]}, which kdp "
              f"does not use")
    # The entrypoint reads its Node with a list (fieldSelector), which list on nodes covers.
    script = (DEPLOY / "scripts" / "dataplane.sh").read_text()
    for path in re.findall(r'(/apis?/[a-z0-9./-]+)', script):
        gr = group_resource(path)
        check("list" in grants.get(gr, set()),
              f"ClusterRole: scripts/dataplane.sh lists {gr[0] or 'core'}/{gr[1]}")
    fields(binding.get("roleRef", {}), "RoleRef", "ClusterRoleBinding.roleRef")
    check(binding.get("roleRef", {}).get("name") == role["metadata"]["name"]
          and binding["roleRef"].get("kind") == "ClusterRole"
          and binding["roleRef"].get("apiGroup") == "rbac.authorization.k8s.io",
          "ClusterRoleBinding: roleRef names the ClusterRole")
    sa = ds["spec"]["template"]["spec"].get("serviceAccountName")
    subjects = binding.get("subjects", [])
    for i, s in enumerate(subjects):
        fields(s, "Subject", f"ClusterRoleBinding.subjects[{i}]")
    check(any(s.get("kind") == "ServiceAccount" and s.get("name") == sa
              and s.get("namespace") == NAMESPACE for s in subjects),
          f"ClusterRoleBinding: binds the DaemonSet's service account {sa}")
    check(sa in accounts, f"ServiceAccount {sa} is shipped")


def check_dashboard():
    """Every metric the Grafana dashboard queries is one kdp-control serves."""
    served = set(re.findall(r'"((?:kdp|kubeproxy)_[a-z_]+)"',
                            (ROOT / "control" / "serve" / "metrics.cc").read_text()))
    path = DEPLOY / "grafana" / "kdp-dashboard.json"
    try:
        dash = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        check(False, f"{path.name}: {e}")
        return
    for panel in dash.get("panels", []):
        for t in panel.get("targets", []):
            for name in re.findall(r"\b((?:kdp|kubeproxy)_[a-z_]+)", t.get("expr", "")):
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                check(name in served or base in served,
                      f"{path.name}: panel \"{panel.get('title')}\" queries {name}, which "
                      f"control/serve/metrics.cc does not serve")


def main():
    docs = []
    files = sorted(DEPLOY.glob("*.yaml"))
    check(files, f"no manifests in {DEPLOY}")
    for f in files:
        for i, d in enumerate(yaml.safe_load_all(f.read_text())):
            if d is not None:
                docs.append((f"{f.name}[{i}]", d))
    by_kind = {}
    for where, d in docs:
        api, kind = d.get("apiVersion"), d.get("kind")
        if not check((api, kind) in KINDS, f"{where}: unknown apiVersion/kind {api}/{kind}"):
            continue
        check_meta(d.get("metadata", {}), f"{where} {kind}", KINDS[(api, kind)])
        by_kind.setdefault(kind, {})[d.get("metadata", {}).get("name")] = d
        if kind == "ConfigMap":
            check(all(isinstance(v, str) for v in d.get("data", {}).values()),
                  f"{where}: ConfigMap data values must be strings")
    check("kdp-system" in by_kind.get("Namespace", {}), "Namespace kdp-system is shipped")
    ds = by_kind.get("DaemonSet", {}).get("kdp")
    if check(ds is not None, "DaemonSet kdp is shipped"):
        pod, volumes = check_daemonset(ds, "DaemonSet kdp")
        check_kdp_daemonset(pod, volumes, by_kind.get("ConfigMap", {}))
        role = by_kind.get("ClusterRole", {}).get("kdp")
        binding = by_kind.get("ClusterRoleBinding", {}).get("kdp")
        if check(role is not None and binding is not None, "ClusterRole/Binding kdp shipped"):
            check_rbac(role, binding, by_kind.get("ServiceAccount", {}), ds)
    check_dashboard()
    if FAILURES:
        for f in FAILURES:
            print(f"FAIL: {f}")
        print(f"{len(FAILURES)} problem(s) in config/deploy/")
        return 1
    print(f"ok: {len(docs)} objects in {len(files)} files; RBAC matches the code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
