"""Static checks of helm/feedback-consumer, for want of a helm binary: the
values against their JSON schema (and values the schema must refuse),
yamllint, and the templates' references to values, helpers and files."""
import json
import os
import re
import subprocess

import jsonschema
import yaml

from chartlib import CHART, ROOT, check, finish, merged

with open(os.path.join(CHART, "values.yaml")) as f:
    values = yaml.safe_load(f)
with open(os.path.join(CHART, "values.schema.json")) as f:
    schema = json.load(f)
validator = jsonschema.Draft7Validator(schema)
jsonschema.Draft7Validator.check_schema(schema)

# --- the schema and the values ----------------------------------------------
errors = [e.message for e in validator.iter_errors(values)]
check("values.yaml validates against values.schema.json", not errors, "; ".join(errors))


def open_objects(node, path="$"):
    """Paths of object schemas with named properties but no additionalProperties: false."""
    found = []
    if isinstance(node, dict):
        if "properties" in node and node.get("additionalProperties") is not False:
            found.append(path)
        for k, v in node.items():
            found += open_objects(v, path + "." + k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += open_objects(v, "%s[%d]" % (path, i))
    return found


open_ones = open_objects(schema)
check("additionalProperties: false wherever properties are named", not open_ones, ", ".join(open_ones))

# Each of these must be refused; the comment says why.
refused = {
    "unknown top-level key": {"replicas": 3},
    "unknown nested key (typo)": {"kafka": {"tls": {"enabeld": True}}},
    "unknown key two levels down": {"autoscaling": {"keda": {"maxReplica": 4}}},
    "wrong type: replicaCount as text": {"replicaCount": "two"},
    "wrong type: tls.enabled as text": {"kafka": {"tls": {"enabled": "yes"}}},
    "port out of range": {"database": {"port": 70000}},
    "unsupported SASL mechanism": {"kafka": {"sasl": {"mechanism": "GSSAPI"}}},
    "sslmode not known to libpq": {"database": {"sslmode": "on"}},
    "a secret in the ConfigMap (kafka.config)": {"kafka": {"config": {"sasl.password": "x"}}},
    "a secret in the ConfigMap (config)": {"config": {"database.url": "postgres://u:p@h/d"}},
    # Set by an environment variable, which wins over the ConfigMap's file.
    "database.schema in config (database.schema sets it)": {"config": {"database.schema": "cx"}},
    "log.format in config (the image sets json)": {"config": {"log.format": "text"}},
    "client.id in kafka.config (the pod name)": {"kafka": {"config": {"client.id": "x"}}},
    "group.id in kafka.config (kafka.groupId, which KEDA watches)": {"kafka": {"config": {"group.id": "g"}}},
    "schema name libpq would quote": {"database": {"schema": "Feedback"}},
    "no key for the host in the Secret": {"database": {"hostKey": ""}},
    "toleration typo (efect)": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "feedback",
                                                 "efect": "NoSchedule"}]},
    "toleration operator Kubernetes lacks": {"tolerations": [{"key": "dedicated", "operator": "Exist"}]},
    "toleration effect Kubernetes lacks": {"tolerations": [{"key": "dedicated", "effect": "NoExecution"}]},
    "affinity typo (nodeAfinity)": {"affinity": {"nodeAfinity": {}}},
    "affinity typo three levels down (podAfinityTerm)": {"affinity": {"podAntiAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAfinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}}},
    "affinity term without topologyKey": {"affinity": {"podAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"app": "x"}}}]}}},
    "node selector operator Kubernetes lacks": {"affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "pool", "operator": "Equals", "values": ["feedback"]}]}]}}}},
    "NetworkPolicy peer typo (podSelecter)": {"networkPolicy": {"metricsFrom": [
        {"podSelecter": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]}},
    "label selector typo (matchLabel)": {"networkPolicy": {"kafkaTo": [
        {"namespaceSelector": {"matchLabel": {"kubernetes.io/metadata.name": "kafka"}}}]}},
    "ipBlock beside a selector": {"networkPolicy": {"postgresTo": [
        {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}},
    "ipBlock without cidr": {"networkPolicy": {"postgresTo": [{"ipBlock": {"except": ["10.0.9.0/24"]}}]}},
    "an empty peer": {"networkPolicy": {"kafkaTo": [{}]}},
    "node selector value not text": {"nodeSelector": {"gpu": True}},
    "pod label value not text": {"podLabels": {"tier": 2}},
    "pod label the selector's": {"podLabels": {"app.kubernetes.io/instance": "other"}},
}
for what, over in refused.items():
    errs = list(validator.iter_errors(merged(values, over)))
    check("refused: " + what, bool(errs), "accepted " + json.dumps(over))

# What a platform engineer writes for SCRAM over TLS with KEDA: accepted.
production = {
    "image": {"repository": "registry.internal/feedback-consumer", "tag": "0.1.0"},
    "kafka": {"bootstrapServers": "kafka-bootstrap:9093",
              "sasl": {"mechanism": "SCRAM-SHA-512", "username": "feedback-consumer",
                       "passwordSecret": {"name": "feedback-consumer", "key": "password"}},
              "tls": {"enabled": True, "secretName": "cluster-ca-cert", "caKey": "ca.crt"},
              "config": {"fetch.max.bytes": 52428800, "enable.ssl.certificate.verification": True}},
    "database": {"existingSecret": "feedback-db", "host": "pg.internal",
                 "sslRootCert": {"secretName": "pg-ca"}},
    "config": {"batch.max.events": 2000, "recovery.enabled": True},
    "autoscaling": {"keda": {"enabled": True, "maxReplicas": 24}},
    "grafana": {"dashboard": {"enabled": True}},
}
errs = [e.message for e in validator.iter_errors(merged(values, production))]
check("accepted: SCRAM over TLS, KEDA, dashboard", not errs, "; ".join(errs))

# Scheduling and traffic as a production namespace has them: accepted.
scheduled = {
    "image": {"repository": "registry.internal/feedback-consumer",
              "digest": "sha256:" + "0123456789abcdef" * 4},
    "kafka": {"bootstrapServers": "kafka-bootstrap.kafka:9092"},
    "database": {"existingSecret": "feedback-db", "sslRootCert": {"secretName": "pg-ca", "key": "ca.pem"}},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "feedback", "effect": "NoSchedule"},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                     "tolerationSeconds": 60}],
    "affinity": {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "node-pool", "operator": "In", "values": ["general", "feedback"]}]}]}},
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "feedback-consumer"}},
                "topologyKey": "kubernetes.io/hostname"}}]}},
    "podLabels": {"team": "cx"},
    "podAnnotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"},
    "networkPolicy": {
        "enabled": True,
        "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                         "podSelector": {"matchExpressions": [
                             {"key": "app.kubernetes.io/name", "operator": "In", "values": ["prometheus"]}]}}],
        "kafkaTo": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kafka"}}}],
        "postgresTo": [{"ipBlock": {"cidr": "10.20.0.0/16", "except": ["10.20.9.0/24"]}}]},
    "podDisruptionBudget": {"maxUnavailable": "25%"},
}
errs = [e.message for e in validator.iter_errors(merged(values, scheduled))]
check("accepted: tolerations, affinity, node selector, network policy peers", not errs, "; ".join(errs))

# --- yamllint ------------------------------------------------------------------
lint = subprocess.run(["yamllint", "-s", "-d", "{extends: default, rules: {line-length: {max: 100}}}",
                       os.path.join(CHART, "Chart.yaml"), os.path.join(CHART, "values.yaml")],
                      capture_output=True, text=True)
check("yamllint Chart.yaml values.yaml", lint.returncode == 0, lint.stdout + lint.stderr)
with open(os.path.join(CHART, "Chart.yaml")) as f:
    chart = yaml.safe_load(f)
check("Chart.yaml: apiVersion v2, name", chart.get("apiVersion") == "v2" and chart.get("name") == "feedback-consumer")


# --- templates -------------------------------------------------------------------
def has_path(tree, path):
    for part in path:
        if not isinstance(tree, dict) or part not in tree:
            return False
        tree = tree[part]
    return True


tdir = os.path.join(CHART, "templates")
sources = {}
for name in sorted(os.listdir(tdir)):
    with open(os.path.join(tdir, name)) as f:
        sources[name] = f.read()
defined = set()
for text in sources.values():
    defined |= set(re.findall(r'{{-?\s*define\s+"([^"]+)"', text))
openers = re.compile(r"{{-?\s*(if|range|with|define)\b")
enders = re.compile(r"{{-?\s*end\b")
for name, text in sources.items():
    actions = re.findall(r"{{(.*?)}}", text, re.S)
    check(name + ": balanced {{ }}", text.count("{{") == text.count("}}") == len(actions),
          "%d {{, %d }}" % (text.count("{{"), text.count("}}")))
    check(name + ": every if/range/with/define has its end",
          len(openers.findall(text)) == len(enders.findall(text)),
          "%d blocks, %d ends" % (len(openers.findall(text)), len(enders.findall(text))))
    missing = sorted({p for p in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text)
                      if not has_path(values, p.strip(".").split("."))})
    check(name + ": every .Values path exists in values.yaml", not missing, ", ".join(missing))
    undefined = sorted(set(re.findall(r'include\s+"([^"]+)"', text)) - defined)
    check(name + ": every included helper is defined", not undefined, ", ".join(undefined))
    absent = [p for p in re.findall(r'\.Files\.Get\s+"([^"]+)"', text)
              if not os.path.isfile(os.path.join(CHART, p))]
    check(name + ": every .Files.Get names a chart file", not absent, ", ".join(absent))

helpers = sources["_helpers.tpl"]
for field in ["runAsNonRoot: true", "readOnlyRootFilesystem: true", "allowPrivilegeEscalation: false",
              "- ALL", "type: RuntimeDefault"]:
    check("restricted pod security: " + field, field in helpers)
for name in ["deployment.yaml", "migration-job.yaml"]:
    check(name + ": uses both security contexts",
          'include "fc.podSecurityContext"' in sources[name]
          and 'include "fc.containerSecurityContext"' in sources[name])
for name in ["deployment.yaml", "migration-job.yaml"]:
    check(name + ": no service links (FEEDBACK_KAFKA_*_PORT would be kafka.* settings)",
          re.search(r"^      enableServiceLinks: false$", sources[name], re.M) is not None)
dep = sources["deployment.yaml"]
check("liveness probe on /healthz, readiness on /readyz",
      re.search(r"livenessProbe:\s*httpGet:\s*path: /healthz", dep) is not None
      and re.search(r"readinessProbe:\s*httpGet:\s*path: /readyz", dep) is not None)
check("/tmp is an emptyDir", re.search(r"- name: tmp\s*emptyDir:", dep) is not None)
job = sources["migration-job.yaml"]
check("the migration is a pre-install,pre-upgrade hook", "helm.sh/hook: pre-install,pre-upgrade" in job)
check("the dashboard ConfigMap carries the sidecar label",
      values["grafana"]["dashboard"]["labelKey"] == "grafana_dashboard"
      and values["grafana"]["dashboard"]["labelValue"] == "1"
      and "{{ $d.labelKey }}: {{ $d.labelValue | quote }}" in sources["dashboard-configmap.yaml"])
for name in ["scaledobject.yaml", "hpa.yaml"]:
    check(name + ": replicas capped at the partition count", 'include "fc.maxReplicas"' in sources[name])
off = [values["autoscaling"]["keda"]["enabled"], values["autoscaling"]["hpa"]["enabled"],
       values["serviceMonitor"]["enabled"], values["networkPolicy"]["enabled"],
       values["strimzi"]["topics"]["enabled"], values["strimzi"]["user"]["enabled"],
       values["grafana"]["dashboard"]["enabled"]]
check("optional objects default to off", not any(off))


# --- README: every value documented ---------------------------------------------
def leaves(tree, prefix=""):
    for k, v in tree.items():
        path = prefix + k
        if isinstance(v, dict) and v:
            yield from leaves(v, path + ".")
        else:
            yield path


with open(os.path.join(CHART, "README.md")) as f:
    readme = f.read()
rows = set(re.findall(r"^\| `([^`]+)` \|", readme, re.M))
undocumented = [p for p in leaves(values) if p not in rows]
check("README.md documents every key of values.yaml", not undocumented, ", ".join(undocumented))
unknown = sorted(r for r in rows if r not in set(leaves(values)))
check("README.md documents no key values.yaml lacks", not unknown, ", ".join(unknown))

finish()
