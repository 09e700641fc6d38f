"""helm/feedback-consumer rendered, for want of a helm binary, by
tests/deploy/render (Go templates, sprig and Helm's functions, values
through JSON as in Helm) with several value sets; the manifests parse and
hold what was set: a working PostgreSQL setup from the three promised
values, integers as integers, selectors that tell the migration Job from
the consumers, autoscalers capped at the partitions, required values, and
SASL passwords only in Secrets."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import jsonschema
import yaml

from chartlib import CHART, ROOT, check, finish, merged

RENDERER = os.path.join(ROOT, "tests", "deploy", "render")


tmp = tempfile.mkdtemp(prefix="fc-render-")
binary = os.path.join(tmp, "render")
# GOPATH mode against Debian's Go sources: no module download.
build = subprocess.run(["go", "build", "-o", binary, "."], cwd=RENDERER, capture_output=True, text=True,
                       env=dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode",
                                GOCACHE=os.path.join(tmp, "gocache"), GOFLAGS=""))
check("the renderer builds", build.returncode == 0, build.stderr)
if build.returncode != 0:
    shutil.rmtree(tmp)
    sys.exit(1)

with open(os.path.join(CHART, "values.yaml")) as f:
    defaults = yaml.safe_load(f)
with open(os.path.join(CHART, "values.schema.json")) as f:
    validator = jsonschema.Draft7Validator(json.load(f))


def render(over, chart=CHART, name="feedback"):
    path = os.path.join(tmp, "values.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(over, f)
    return subprocess.run([binary, "-name", name, "-namespace", "feedback", "-f", path, chart],
                          capture_output=True, text=True)


def manifests(what, over, name="feedback"):
    """The documents of a value set that helm would accept, or None."""
    errs = [e.message for e in validator.iter_errors(merged(defaults, over))]
    check(what + ": the values validate", not errs, "; ".join(errs))
    out = render(over, name=name)
    check(what + ": renders", out.returncode == 0, out.stderr)
    if out.returncode != 0:
        return None, ""
    try:
        docs = [d for d in yaml.safe_load_all(out.stdout) if d is not None]
    except yaml.YAMLError as e:
        check(what + ": every document parses", False, str(e))
        return None, out.stdout
    check(what + ": every document parses", True)
    return docs, out.stdout


def kinds(docs):
    return sorted(d["kind"] for d in docs)


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found[0] if len(found) == 1 else None


def env(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def conf(docs):
    """The ConfigMap's feedback-consumer.conf as key: value text."""
    text = one(docs, "ConfigMap", "feedback-feedback-consumer")["data"]["feedback-consumer.conf"]
    return dict(line.split(" = ", 1) for line in text.splitlines() if line)


def selects(match_labels, labels):
    return all(labels.get(k) == v for k, v in match_labels.items())


def secret_ref(name, key):
    return {"secretKeyRef": {"name": name, "key": key}}


E_NOTATION = re.compile(r"\b[0-9](\.[0-9]+)?e[+-][0-9]+\b")


def e_notation(text):
    return ", ".join(m.group(0) for m in E_NOTATION.finditer(text))


def is_int(value, want):
    """YAML's 6.7108864e+07 loads as a float equal to the integer."""
    return type(value) is int and value == want

# --- the renderer itself: numbers as Helm has them -----------------------------
fixture = os.path.join(tmp, "fixture")
os.makedirs(os.path.join(fixture, "templates"))
with open(os.path.join(fixture, "Chart.yaml"), "w") as f:
    f.write("apiVersion: v2\nname: fixture\nversion: 1.2.3\nappVersion: \"4.5\"\n")
with open(os.path.join(fixture, "values.yaml"), "w") as f:
    f.write("n: 604800000\nm: {a: 1}\n")
with open(os.path.join(fixture, "templates", "_h.tpl"), "w") as f:
    f.write('{{- define "h" -}}{{ .Chart.Name }}-{{ .Chart.AppVersion }}{{- end -}}\n')
with open(os.path.join(fixture, "templates", "t.yaml"), "w") as f:
    f.write('plain: "{{ .Values.n }}"\nasInt: {{ .Values.n | int64 }}\n'
            'yaml:\n  {{- toYaml .Values.m | nindent 2 }}\nhelper: {{ include "h" . }}\n'
            'release: {{ .Release.Name }}/{{ .Release.Namespace }}/{{ .Release.Service }}\n'
            'path: {{ .Template.Name }}\nneeded: {{ required "m.b is required" .Values.m.b }}\n')
out = render({"m": {"b": "x"}}, fixture)
check("renderer: a YAML integer prints as Helm prints a float64",
      out.stdout == "---\n# Source: fixture/templates/t.yaml\nplain: \"6.048e+08\"\nasInt: 604800000\n"
      "yaml:\n  a: 1\n  b: x\nhelper: fixture-4.5\nrelease: feedback/feedback/Helm\n"
      "path: fixture/templates/t.yaml\nneeded: x\n", out.stdout + out.stderr)
check("renderer: the e-notation pattern finds what Helm prints", E_NOTATION.search(out.stdout) is not None)
out = render({}, fixture)
check("renderer: required fails with its message",
      out.returncode != 0 and "m.b is required" in out.stderr and out.stdout == "", out.stderr)

# --- the three values the README promises are enough -----------------------------
three = {"image": {"repository": "registry.internal/feedback-consumer"},
         "kafka": {"bootstrapServers": "kafka-bootstrap:9092"},
         "database": {"existingSecret": "feedback-db"}}
docs, text = manifests("three values", three)
if docs:
    check("three values: the objects",
          kinds(docs) == ["ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service", "ServiceAccount"],
          ", ".join(kinds(docs)))
    sources = re.findall(r"^# Source: (.*)$", text, re.M)
    check("three values: a Source comment per document",
          sources == ["feedback-consumer/templates/" + n for n in
                      ["configmap.yaml", "deployment.yaml", "migration-job.yaml", "pdb.yaml", "service.yaml",
                       "serviceaccount.yaml"]], ", ".join(sources))
    dep, job = one(docs, "Deployment"), one(docs, "Job")
    consumer = dep["spec"]["template"]["spec"]["containers"][0]
    migrate = job["spec"]["template"]["spec"]["containers"][0]
    check("three values: the image at the chart's appVersion",
          consumer["image"] == migrate["image"] == "registry.internal/feedback-consumer:0.1.0")
    # libpq's defaults would look for ~/.postgresql/root.crt, which the image lacks.
    for who, c, user, password in [("consumer", consumer, "feedback_runtime", "password"),
                                   ("migration", migrate, "feedback_migrator", "migrator-password")]:
        check("three values: the %s's PostgreSQL settings" % who, env(c) == dict(env(c), **{
            "PGHOST": secret_ref("feedback-db", "host"), "PGPORT": "5432", "PGDATABASE": "feedback",
            "PGUSER": user, "PGPASSWORD": secret_ref("feedback-db", password), "PGSSLMODE": "verify-full",
            "PGSSLROOTCERT": "/etc/ssl/certs/ca-certificates.crt", "FEEDBACK_DATABASE_SCHEMA": "feedback"}),
              json.dumps(env(c)))
    with open(os.path.join(ROOT, "deploy", "Dockerfile")) as f:
        runtime_stage = f.read().split("\nFROM ")[-1]
    check("the runtime image installs the CA bundle PGSSLROOTCERT names", "ca-certificates" in runtime_stage)
    check("three values: no e-notation", E_NOTATION.search(text) is None, e_notation(text))

    # A selector matches a pod when all its matchLabels are among the pod's labels.
    pod = dep["spec"]["template"]["metadata"]["labels"]
    job_pod = job["spec"]["template"]["metadata"]["labels"]
    selectors = {"Deployment": dep["spec"]["selector"]["matchLabels"],
                 "Service": one(docs, "Service")["spec"]["selector"],
                 "PodDisruptionBudget": one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]}
    for c in dep["spec"]["template"]["spec"]["topologySpreadConstraints"]:
        selectors["topology spread " + c["topologyKey"]] = c["labelSelector"]["matchLabels"]
    check("three values: five selectors", len(selectors) == 5, ", ".join(selectors))
    for what, sel in selectors.items():
        check("the %s selector matches the consumers" % what, selects(sel, pod), json.dumps([sel, pod]))
        check("the %s selector misses the migration" % what, not selects(sel, job_pod), json.dumps([sel, job_pod]))
    check("the migration's pods are the release's", job_pod == {
        "app.kubernetes.io/name": "feedback-consumer-migration", "app.kubernetes.io/instance": "feedback",
        "app.kubernetes.io/component": "migration"}, json.dumps(job_pod))

# --- PostgreSQL variants ----------------------------------------------------------
docs, _ = manifests("host in values, private CA", merged(three, {"database": {
    "host": "pg.internal", "sslRootCert": {"secretName": "pg-ca", "key": "root.pem"}}}))
if docs:
    for kind in ["Deployment", "Job"]:
        spec = one(docs, kind)["spec"]["template"]["spec"]
        e = env(spec["containers"][0])
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        vols = {v["name"]: v for v in spec["volumes"]}
        check(kind + ": PGHOST from the values", e["PGHOST"] == "pg.internal", json.dumps(e))
        check(kind + ": PGSSLROOTCERT in the mounted CA Secret",
              e["PGSSLROOTCERT"] == "/var/run/secrets/feedback/database-ca/root.pem"
              and mounts.get("database-ca") == "/var/run/secrets/feedback/database-ca"
              and vols["database-ca"]["secret"]["secretName"] == "pg-ca", json.dumps([e, mounts]))
docs, _ = manifests("sslmode require", merged(three, {"database": {"sslmode": "require"}}))
if docs:
    # A root certificate would make libpq verify the chain after all.
    e = env(one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0])
    check("sslmode require: no PGSSLROOTCERT", e["PGSSLMODE"] == "require" and "PGSSLROOTCERT" not in e,
          json.dumps(e))
docs, _ = manifests("libpq URLs", merged(three, {"database": {"urlKey": "url"},
                                                  "migration": {"existingSecret": "feedback-migrator",
                                                                "urlKey": "migrator-url"}}))
if docs:
    for kind, secret, key in [("Deployment", "feedback-db", "url"), ("Job", "feedback-migrator", "migrator-url")]:
        spec = one(docs, kind)["spec"]["template"]["spec"]
        e = env(spec["containers"][0])
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        vols = {v["name"]: v["secret"] for v in spec["volumes"] if "secret" in v}
        check(kind + ": the URL from its mounted Secret key",
              e["FEEDBACK_DATABASE_URL_FILE"] == "/var/run/secrets/feedback/database/" + key
              and mounts["database"] == "/var/run/secrets/feedback/database"
              and vols["database"]["secretName"] == secret
              and vols["database"]["items"] == [{"key": key, "path": key}]
              and not {"PGHOST", "PGUSER", "PGPASSWORD"} & set(e), json.dumps([e, mounts, vols]))

# --- everything optional ------------------------------------------------------------
peers = {"metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                          "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}],
         "kafkaTo": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kafka"}}}],
         "postgresTo": [{"ipBlock": {"cidr": "10.20.0.0/16", "except": ["10.20.9.0/24"]}}]}
everything = merged(three, {
    "kafka": {"bootstrapServers": "my-cluster-kafka-bootstrap:9093",
              "sasl": {"mechanism": "SCRAM-SHA-512", "username": "feedback-consumer",
                       "passwordSecret": {"name": "feedback-consumer", "key": "password"}},
              "tls": {"enabled": True, "secretName": "my-cluster-cluster-ca-cert"},
              "config": {"fetch.max.bytes": 52428800, "queued.max.messages.kbytes": 1048576,
                         "enable.ssl.certificate.verification": True, "client.rack": "eu-west-1a"}},
    "config": {"batch.max.events": 2000, "sla.seconds": 60, "recovery.enabled": True},
    "topics": {"partitions": 6},
    "autoscaling": {"keda": {"enabled": True, "maxReplicas": 24, "lagThreshold": 5000000,
                             "cooldownPeriod": 1800}},
    "migration": {"activeDeadlineSeconds": 1200000},
    "tmpSizeLimit": 67108864,
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "networkPolicy": dict(peers, enabled=True),
    "strimzi": {"clusterName": "my-cluster", "topics": {"enabled": True}, "user": {"enabled": True}},
    "grafana": {"dashboard": {"enabled": True, "folder": "Customer feedback"}},
    "podLabels": {"team": "cx"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "kafka", "effect": "NoSchedule"}],
})
docs, text = manifests("everything optional", everything)
if docs:
    check("everything optional: the objects", kinds(docs) == sorted(
        ["ConfigMap", "ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service", "ServiceAccount",
         "ScaledObject", "TriggerAuthentication", "Secret", "ServiceMonitor", "NetworkPolicy", "NetworkPolicy",
         "KafkaUser"] + ["KafkaTopic"] * 6), ", ".join(kinds(docs)))
    check("everything optional: no e-notation", E_NOTATION.search(text) is None, e_notation(text))
    topics = [d["spec"] for d in docs if d["kind"] == "KafkaTopic"]
    retention = {t["topicName"]: t["config"]["retention.ms"] for t in topics}
    check("KafkaTopic retention.ms: integers, 30 days for dead letters", retention == {
        "feedback.sms": 604800000, "feedback.email": 604800000, "feedback.phone": 604800000,
        "feedback.social": 604800000, "feedback.recovery": 604800000, "feedback.dlq": 2592000000}
        and all(type(v) is int for v in retention.values()), json.dumps(retention))
    check("KafkaTopic partitions and replicas: integers",
          all(is_int(t["partitions"], 6) and is_int(t["replicas"], 3) for t in topics))
    c = conf(docs)
    expected = {"kafka.fetch.max.bytes": "52428800", "kafka.queued.max.messages.kbytes": "1048576",
                "kafka.enable.ssl.certificate.verification": "true", "kafka.client.rack": "eu-west-1a",
                "batch.max.events": "2000", "sla.seconds": "60", "recovery.enabled": "true",
                "kafka.security.protocol": "SASL_SSL", "kafka.sasl.mechanism": "SCRAM-SHA-512",
                "kafka.sasl.username": "feedback-consumer",
                "kafka.ssl.ca.location": "/var/run/secrets/feedback/kafka-tls/ca.crt"}
    check("the ConfigMap: free-form integers as written, SASL without password",
          c == dict(c, **expected), json.dumps(c))
    check("the ConfigMap: no password key", not [k for k in c if "password" in k], ", ".join(c))

    dep = one(docs, "Deployment")
    spec = dep["spec"]["template"]["spec"]
    e = env(spec["containers"][0])
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    vols = {v["name"]: v for v in spec["volumes"]}
    check("SASL: the password file in the mounted Secret",
          e.get("FEEDBACK_KAFKA_SASL_PASSWORD_FILE") == "/var/run/secrets/feedback/kafka-sasl/password"
          and mounts.get("kafka-sasl") == "/var/run/secrets/feedback/kafka-sasl"
          and vols["kafka-sasl"]["secret"]["secretName"] == "feedback-consumer"
          and vols["kafka-sasl"]["secret"]["items"] == [{"key": "password", "path": "password"}],
          json.dumps([e, mounts]))
    check("sizeLimit: the integer as written", is_int(vols["tmp"]["emptyDir"]["sizeLimit"], 67108864))
    check("the Job's deadline: an integer", is_int(one(docs, "Job")["spec"]["activeDeadlineSeconds"], 1200000))
    check("no replicas under an autoscaler", "replicas" not in dep["spec"])

    so = one(docs, "ScaledObject")
    check("KEDA: maxReplicaCount 24 capped at 6 partitions", is_int(so["spec"]["maxReplicaCount"], 6),
          str(so["spec"]["maxReplicaCount"]))
    check("KEDA: lagThreshold and cooldown as integers",
          so["spec"]["triggers"][0]["metadata"]["lagThreshold"] == "5000000"
          and is_int(so["spec"]["cooldownPeriod"], 1800))
    keda = one(docs, "Secret")
    check("KEDA: its Secret holds no password", keda["stringData"] == {
        "sasl": "scram_sha512", "username": "feedback-consumer", "tls": "enable"}, json.dumps(keda["stringData"]))
    refs = one(docs, "TriggerAuthentication")["spec"]["secretTargetRef"]
    auth = {r["parameter"]: (r["name"], r["key"]) for r in refs}
    check("KEDA: the password from the SASL Secret", auth["password"] == ("feedback-consumer", "password"))

    pod = dep["spec"]["template"]["metadata"]["labels"]
    job_pod = one(docs, "Job")["spec"]["template"]["metadata"]["labels"]
    main = one(docs, "NetworkPolicy", "feedback-feedback-consumer")
    mig = one(docs, "NetworkPolicy", "feedback-feedback-consumer-migrate")
    check("NetworkPolicy: one for the consumers, one for the migration", main is not None and mig is not None)
    if main and mig:
        check("NetworkPolicy of the consumers: their pods only",
              selects(main["spec"]["podSelector"]["matchLabels"], pod)
              and not selects(main["spec"]["podSelector"]["matchLabels"], job_pod))
        check("NetworkPolicy of the migration: its pods only",
              selects(mig["spec"]["podSelector"]["matchLabels"], job_pod)
              and not selects(mig["spec"]["podSelector"]["matchLabels"], pod))
        check("NetworkPolicy: the peers as given",
              main["spec"]["ingress"][0]["from"] == peers["metricsFrom"]
              and main["spec"]["egress"][1]["to"] == peers["kafkaTo"]
              and main["spec"]["egress"][2]["to"] == peers["postgresTo"]
              and [p["port"] for p in main["spec"]["egress"][1]["ports"]] == [9092, 9093])
        check("NetworkPolicy of the migration: nothing in, out DNS and PostgreSQL",
              "ingress" not in mig["spec"]
              and [r.get("to") for r in mig["spec"]["egress"]] == [None, peers["postgresTo"]]
              and [p["port"] for r in mig["spec"]["egress"] for p in r["ports"]] == [53, 53, 5432])
    sm = one(docs, "ServiceMonitor")
    check("ServiceMonitor: selects the Service",
          selects(sm["spec"]["selector"]["matchLabels"], one(docs, "Service")["metadata"]["labels"])
          and sm["metadata"]["labels"]["release"] == "prometheus")

# --- autoscaler caps --------------------------------------------------------------------
for what, over, field, want in [
        ("HPA: maxReplicas 24 capped at 6 partitions",
         {"topics": {"partitions": 6}, "autoscaling": {"hpa": {"enabled": True, "maxReplicas": 24}}},
         ("HorizontalPodAutoscaler", "maxReplicas"), 6),
        ("HPA: maxReplicas 4 below 12 partitions",
         {"autoscaling": {"hpa": {"enabled": True, "maxReplicas": 4}}},
         ("HorizontalPodAutoscaler", "maxReplicas"), 4),
        ("KEDA: maxReplicas 4 below 12 partitions",
         {"autoscaling": {"keda": {"enabled": True, "maxReplicas": 4}}}, ("ScaledObject", "maxReplicaCount"), 4),
        ("HPA: 12 partitions for pods of 5 consumers: 3 replicas",
         {"config": {"consumer.workers": 5}, "autoscaling": {"hpa": {"enabled": True, "maxReplicas": 24}}},
         ("HorizontalPodAutoscaler", "maxReplicas"), 3),
        ("HPA: minReplicas 2 capped at 1 partition",
         {"topics": {"partitions": 1}, "autoscaling": {"hpa": {"enabled": True, "minReplicas": 2}}},
         ("HorizontalPodAutoscaler", "minReplicas"), 1),
        ("HPA: minReplicas 2 kept under 12 partitions",
         {"autoscaling": {"hpa": {"enabled": True, "minReplicas": 2}}},
         ("HorizontalPodAutoscaler", "minReplicas"), 2),
        ("KEDA: minReplicas 3 capped at 2 partitions",
         {"topics": {"partitions": 2}, "autoscaling": {"keda": {"enabled": True, "minReplicas": 3}}},
         ("ScaledObject", "minReplicaCount"), 2)]:
    docs, _ = manifests(what, merged(three, over))
    if docs:
        got = one(docs, field[0])["spec"][field[1]]
        check(what, is_int(got, want), str(got))

# --- TLS for KEDA as the consumer speaks it -------------------------------------------
# Brokers with a public CA: the protocol says TLS, no CA Secret is given.
for protocol, sasl in [("SASL_SSL", {"mechanism": "SCRAM-SHA-512", "username": "u",
                                     "passwordSecret": {"name": "pw", "key": "password"}}),
                       ("SSL", {})]:
    what = "KEDA over %s with the system's CAs" % protocol
    docs, _ = manifests(what, merged(three, {
        "kafka": {"securityProtocol": protocol, "sasl": sasl},
        "autoscaling": {"keda": {"enabled": True}}}))
    if docs:
        auth = one(docs, "TriggerAuthentication")
        refs = {r["parameter"] for r in auth["spec"]["secretTargetRef"]} if auth else set()
        check(what + ": TLS on, no CA of ours", refs >= {"tls"} and "ca" not in refs, str(refs))
        keda = one(docs, "Secret")
        check(what + ": its Secret says enable", keda is not None and keda["stringData"]["tls"] == "enable",
              json.dumps(keda and keda["stringData"]))

# --- the longest release name helm allows: 53 characters --------------------------------
long_name = "customer-feedback-ingestion-production-euwest1-abcdef"
assert len(long_name) == 53
docs, _ = manifests("a release name of 53 characters", everything, name=long_name)
if docs:
    # A Job's and a Service's name are labels (63); every other name a DNS subdomain (253).
    too_long = ["%s %s" % (d["kind"], d["metadata"]["name"]) for d in docs
                if len(d["metadata"]["name"]) > (63 if d["kind"] in ("Job", "Service") else 253)]
    check("a release name of 53 characters: every name fits", not too_long, ", ".join(too_long))
    job = one(docs, "Job")
    check("a release name of 53 characters: the Job ends in -migrate",
          job is not None and job["metadata"]["name"].endswith("-migrate"), job and job["metadata"]["name"])

# --- refusals ----------------------------------------------------------------------------
for what, over, message in [
        ("no image.repository", {"image": {"repository": ""}}, "image.repository is required"),
        ("no kafka.bootstrapServers", {"kafka": {"bootstrapServers": ""}}, "kafka.bootstrapServers is required"),
        ("no database.existingSecret", {"database": {"existingSecret": ""}}, "database.existingSecret"),
        ("SASL without its Secret", {"kafka": {"sasl": {"mechanism": "PLAIN", "username": "u"}}},
         "kafka.sasl.passwordSecret.name is required"),
        ("KEDA and HPA together", {"autoscaling": {"keda": {"enabled": True}, "hpa": {"enabled": True}}},
         "autoscaling.keda and autoscaling.hpa exclude each other")]:
    out = render(merged(three, over))
    check("fails: " + what, out.returncode != 0 and message in out.stderr and out.stdout == "",
          "rc %d: %s" % (out.returncode, out.stderr))

shutil.rmtree(tmp)
finish()
