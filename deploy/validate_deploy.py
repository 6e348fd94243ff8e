"""Structural checks of deploy/ that no schema can make (run by ``.ci/validate-deploy``).

Schemas say a Deployment is well formed; they cannot say that its probes hit the admin
port, that its grace period outlasts ``SHADOWPROXY_GRACE_S``, that the compose services
start in the right order, or that every ``SHADOWPROXY_*`` name is one shadowproxy reads
(an unknown one is silently ignored, so a typo would ship). Needs only PyYAML and the
project itself; no Docker engine, no cluster, no network.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
K8S = DEPLOY / "k8s"
sys.path.insert(0, str(REPO))

from shadowproxy.settings import ENV_PREFIX, Settings, SettingsError, load_settings  # noqa: E402

FLUSH_MARGIN_S = 10
SECRET_KEYS = ("SHADOWPROXY_SHADOW_API_KEY", "SHADOWPROXY_DATABASE_URL", "SHADOWPROXY_ADMIN_TOKEN")

Doc = dict[str, Any]


class Findings:
    """Collects every problem so one run reports them all, not just the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.passed = 0

    def check(self, condition: object, what: str) -> bool:
        if condition:
            self.passed += 1
            print(f"  ok: {what}")
        else:
            self.problems.append(what)
            print(f"  FAIL: {what}")
        return bool(condition)


def known_setting(name: str) -> bool:
    if name == "ANTHROPIC_API_KEY":
        return True
    return name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX):].lower() in Settings.model_fields


@contextmanager
def clean_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Only ``values`` visible to Settings, whatever the caller's environment holds."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX) or name == "ANTHROPIC_API_KEY":
            del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def settings_accept(env: Mapping[str, str], f: Findings, where: str) -> Settings | None:
    unknown = sorted(name for name in env if not known_setting(name))
    f.check(not unknown, f"{where}: names shadowproxy does not read: {unknown}")
    with clean_environment({k: v for k, v in env.items() if known_setting(k)}):
        try:
            settings = load_settings()
        except SettingsError as exc:
            f.check(False, f"{where}: shadowproxy rejects the settings: {exc}")
            return None
    f.check(True, f"{where}: settings load")
    return settings


# --- Dockerfile -----------------------------------------------------------------------

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out: list[tuple[str, str]] = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def check_dockerfile(f: Findings) -> None:
    print("Dockerfile")
    instructions = dockerfile_instructions((DEPLOY / "Dockerfile").read_text())
    froms = [rest for kw, rest in instructions if kw == "FROM"]
    f.check(len(froms) >= 2, "Dockerfile is multi-stage (builder + runtime)")
    for image in (rest.split()[0] for rest in froms):
        _, _, tag = image.partition(":")
        f.check(tag and not tag.startswith("latest"), f"base image {image} has a pinned tag")
    f.check(froms and froms[-1].startswith("python:3.11"), "runtime stage is python:3.11-slim")
    f.check(froms and "slim" in froms[-1].split()[0], "runtime stage is a slim image")
    final = instructions[max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM"):]

    users = [rest for kw, rest in final if kw == "USER"]
    f.check(users and users[-1].split(":")[0] not in ("root", "0"), "runtime runs as non-root")
    f.check(users and users[-1].split(":")[0].isdigit(),
            "USER is numeric, so Kubernetes runAsNonRoot can verify it")
    exposed = {p.split("/")[0] for kw, rest in final if kw == "EXPOSE" for p in rest.split()}
    f.check({"8080", "9090"} <= exposed, f"EXPOSE 8080 9090 (got {sorted(exposed)})")
    health = [rest for kw, rest in final if kw == "HEALTHCHECK"]
    f.check(health and "/healthz" in health[-1] and "curl" not in health[-1],
            "HEALTHCHECK asks /healthz without curl")
    entry = [yaml.safe_load(rest) for kw, rest in final if kw == "ENTRYPOINT"]
    f.check(entry == [["shadowproxy"]], 'ENTRYPOINT ["shadowproxy"]')
    cmd = [yaml.safe_load(rest) for kw, rest in final if kw == "CMD"]
    f.check(cmd[-1:] == [["serve", "--no-migrate"]], 'CMD ["serve", "--no-migrate"]')

    for kw, rest in instructions:
        if kw == "COPY" and "--from=" not in rest:
            for source in shlex.split(rest)[:-1]:
                f.check((REPO / source).exists(), f"COPY source {source} exists in the repo")
        if kw == "RUN" and "pip install" in rest:
            f.check("--no-cache-dir" in rest, "pip install uses --no-cache-dir")
            f.check(" . " in f"{rest} " or rest.rstrip().endswith(" ."),
                    "pip installs the repository itself (pip install .)")
        if kw in ("ENV", "ARG"):
            f.check(not re.search(r"(KEY|TOKEN|PASSWORD|SECRET|DATABASE_URL)\b", rest),
                    f"no secret-looking value baked in: {kw} {rest[:60]}")
    env_names = re.findall(r"(SHADOWPROXY_\w+)=", " ".join(r for k, r in final if k == "ENV"))
    f.check(all(known_setting(n) for n in env_names), f"ENV names are settings: {env_names}")
    f.check({"SHADOWPROXY_HOST", "SHADOWPROXY_ADMIN_HOST"} <= set(env_names),
            "image listens on 0.0.0.0 (SHADOWPROXY_HOST, SHADOWPROXY_ADMIN_HOST)")


def check_packaging(f: Findings) -> None:
    """The image's `migrate` needs the Alembic scripts inside the installed package."""
    print("packaging")
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    tool = pyproject.get("tool", {}).get("setuptools", {})
    mapped = "shadowproxy._migrations" in tool.get("package-dir", {})
    inside = (REPO / "shadowproxy" / "_migrations" / "env.py").is_file()
    f.check(mapped or inside, "Alembic scripts ship as shadowproxy._migrations, so the "
            "image's `shadowproxy migrate` finds them")


# --- compose --------------------------------------------------------------------------

def seconds(value: object) -> float:
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(value)):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def depends(service: Doc, on: str) -> str | None:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return "service_started" if on in deps else None
    entry = deps.get(on)
    return None if entry is None else str(entry.get("condition", "service_started"))


def env_of(service: Doc) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def interpolate(value: str, host: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, enough for these files."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        if host.get(name):
            return host[name]
        if op == ":-":
            return arg
        return ""
    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, value)


def check_compose(f: Findings, grace_s: float) -> None:
    print("docker-compose.yml")
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services: dict[str, Doc] = doc.get("services", {})
    f.check({"postgres", "migrate", "proxy"} <= set(services),
            f"services postgres, migrate, proxy (got {sorted(services)})")
    postgres = services.get("postgres", {})
    migrate = services.get("migrate", {})
    proxy = services.get("proxy", {})

    f.check(str(postgres.get("image", "")).startswith("postgres:16"), "postgres is postgres:16")
    f.check(postgres.get("healthcheck", {}).get("test"), "postgres has a healthcheck")
    f.check(any(str(v).endswith(":/var/lib/postgresql/data") for v in postgres.get("volumes", [])),
            "postgres keeps its data on a volume")

    f.check(migrate.get("command") == ["migrate", "--schema-only"],
            "migrate runs `shadowproxy migrate --schema-only` (the proxy moves old rows)")
    f.check(depends(migrate, "postgres") == "service_healthy",
            "migrate waits for postgres to be healthy")
    f.check(str(migrate.get("restart", "no")) == "no", "migrate is one-shot (restart: no)")

    f.check(proxy.get("command") in (None, ["serve", "--no-migrate"]),
            "proxy runs `serve --no-migrate`")
    f.check(depends(proxy, "migrate") == "service_completed_successfully",
            "proxy waits for migrate to complete successfully")
    test = " ".join(map(str, proxy.get("healthcheck", {}).get("test", [])))
    f.check("/healthz" in test, "proxy has a healthcheck on /healthz")
    published = {str(p).rsplit(":", 1)[-1].split("/")[0] for p in proxy.get("ports", [])}
    f.check({"8080", "9090"} <= published, f"proxy publishes 8080 and 9090 (got {published})")
    f.check(any(str(v).endswith(":/var/lib/shadowproxy") for v in proxy.get("volumes", [])),
            "proxy keeps its spool on a volume")
    f.check(seconds(proxy.get("stop_grace_period", "10s")) >= grace_s + FLUSH_MARGIN_S,
            f"proxy stop_grace_period >= GRACE_S {grace_s:g}s + {FLUSH_MARGIN_S}s flush")

    raw_env = env_of(proxy)
    f.check(re.search(r"\$\{PRIMARY_URL\b", raw_env.get("SHADOWPROXY_PRIMARY_URL", "")),
            "SHADOWPROXY_PRIMARY_URL comes from the host's PRIMARY_URL")
    f.check(re.search(r"\$\{SHADOW_API_KEY\b", raw_env.get("SHADOWPROXY_SHADOW_API_KEY", "")),
            "SHADOWPROXY_SHADOW_API_KEY comes from the host's SHADOW_API_KEY")
    host = {"PRIMARY_URL": "https://api.openai.com", "SHADOW_API_KEY": "sk-ant-test"}
    for name in ("migrate", "proxy"):
        env = {k: interpolate(v, host) for k, v in env_of(services.get(name, {})).items()}
        settings_accept(env, f, f"compose {name} environment")

    for name, service in services.items():
        build = service.get("build")
        if isinstance(build, dict):
            context = (DEPLOY / build.get("context", ".")).resolve()
            f.check(context == REPO, f"{name}: build context is the repository root")
            f.check((context / build.get("dockerfile", "Dockerfile")).is_file(),
                    f"{name}: build dockerfile exists")
    declared = set(doc.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/", "~")):
                f.check(source in declared, f"{name}: volume {source} is declared")


# --- Kubernetes -----------------------------------------------------------------------

def load_manifests() -> dict[str, Doc]:
    """Every manifest by ``Kind/name``; one document per file is our convention."""
    out: dict[str, Doc] = {}
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc | {"_file": path.name}
    return out


def one(manifests: Mapping[str, Doc], kind: str) -> Doc:
    found = [d for key, d in manifests.items() if key.startswith(f"{kind}/")]
    if len(found) != 1:
        raise SystemExit(f"expected exactly one {kind} in deploy/k8s, found {len(found)}")
    return found[0]


def http_probe(container: Doc, probe: str) -> tuple[str, object]:
    get = (container.get(probe) or {}).get("httpGet") or {}
    return str(get.get("path")), get.get("port")


def secret_refs(container: Doc) -> dict[str, tuple[str, str]]:
    refs: dict[str, tuple[str, str]] = {}
    for item in container.get("env", []):
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            refs[item["name"]] = (ref["name"], ref["key"])
    return refs


def check_kubernetes(f: Findings) -> float:
    print("k8s/")
    manifests = load_manifests()
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = kustomization.get("resources", [])
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    f.check(all((K8S / r).is_file() for r in listed), f"kustomization resources exist: {listed}")
    f.check(files - set(listed) == {"secret.example.yaml"},
            "kustomization lists every manifest but the example Secret "
            f"(unlisted: {sorted(files - set(listed))})")
    f.check(all("namespace" not in d["metadata"] for d in manifests.values()),
            "manifests are namespace-agnostic")

    config = one(manifests, "ConfigMap")
    secret = one(manifests, "Secret")
    deployment = one(manifests, "Deployment")
    job = one(manifests, "Job")
    service = one(manifests, "Service")
    hpa = one(manifests, "HorizontalPodAutoscaler")
    pdb = one(manifests, "PodDisruptionBudget")

    secret_values: dict[str, str] = secret.get("stringData", {})
    f.check(set(SECRET_KEYS) <= set(secret_values), f"example Secret holds {SECRET_KEYS}")
    f.check(all("REPLACE-ME" in v for v in secret_values.values()),
            "example Secret values are marked REPLACE-ME placeholders")
    env: dict[str, str] = {k: str(v) for k, v in config.get("data", {}).items()}
    settings = settings_accept(env | secret_values, f, "ConfigMap + example Secret")
    grace_s = settings.grace_s if settings else 30.0
    f.check(env.get("SHADOWPROXY_HOST") == "0.0.0.0" == env.get("SHADOWPROXY_ADMIN_HOST"),
            "ConfigMap listens on 0.0.0.0 (proxy and admin)")
    data_dir = env.get("SHADOWPROXY_DATA_DIR", "")
    proxy_port = int(env.get("SHADOWPROXY_PORT", "8080"))
    admin_port = int(env.get("SHADOWPROXY_ADMIN_PORT", "9090"))

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    f.check(selector.items() <= labels.items(), "Deployment selector matches its pod labels")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    f.check(container.get("args") == ["serve", "--no-migrate"],
            "Deployment runs `serve --no-migrate` (the Job migrates)")
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    f.check(ports == {"proxy": proxy_port, "admin": admin_port},
            f"container ports proxy {proxy_port}, admin {admin_port} (got {ports})")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        got = http_probe(container, probe)
        f.check(got[0] == path and got[1] in ("admin", admin_port),
                f"{probe} is GET {path} on the admin port (got {got})")
    for kind in ("requests", "limits"):
        amounts = (container.get("resources") or {}).get(kind) or {}
        f.check({"cpu", "memory"} <= set(amounts), f"container sets cpu and memory {kind}")

    for name, spec in (("Deployment", pod), ("Job", job["spec"]["template"]["spec"])):
        for c in spec["containers"]:
            ctx = {**(spec.get("securityContext") or {}), **(c.get("securityContext") or {})}
            f.check(ctx.get("runAsNonRoot") is True and ctx.get("runAsUser", 0) != 0,
                    f"{name}: runs as non-root")
            f.check(ctx.get("readOnlyRootFilesystem") is True,
                    f"{name}: read-only root filesystem")
            f.check(ctx.get("allowPrivilegeEscalation") is False,
                    f"{name}: no privilege escalation")
            empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            needed = ["/tmp"] + ([data_dir] if name == "Deployment" else [])
            for path in needed:
                f.check(mounts.get(path) in empty_dirs, f"{name}: {path} is a writable emptyDir")
            f.check({"configMapRef": {"name": config["metadata"]["name"]}} in c.get("envFrom", []),
                    f"{name}: settings come from the ConfigMap")
            for var, (ref_name, key) in secret_refs(c).items():
                f.check(ref_name == secret["metadata"]["name"] and key in secret_values,
                        f"{name}: {var} refers to a key of the Secret")
    refs = secret_refs(container)
    f.check(set(SECRET_KEYS) <= set(refs), f"Deployment takes {SECRET_KEYS} from the Secret")
    f.check("SHADOWPROXY_DATABASE_URL" in secret_refs(job["spec"]["template"]["spec"]
                                                      ["containers"][0]),
            "Job takes SHADOWPROXY_DATABASE_URL from the Secret")
    f.check(job["spec"]["template"]["spec"]["containers"][0].get("args")
            == ["migrate", "--schema-only"],
            "Job runs `shadowproxy migrate --schema-only` (the replicas move old rows)")
    f.check(job["spec"]["template"]["spec"]["containers"][0]["image"] == container["image"],
            "Job and Deployment run the same image")
    image_name = str(container["image"]).rsplit(":", 1)[0]
    f.check(any(i.get("name") == image_name for i in kustomization.get("images", [])),
            f"kustomization `images` can retarget {image_name}")

    command = (((container.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get(
        "command", [])
    sleep_s = float(command[1]) if command[:1] == ["sleep"] and len(command) == 2 else 0.0
    f.check(sleep_s > 0, f"preStop sleeps so endpoints drop the pod first (got {command})")
    period = pod.get("terminationGracePeriodSeconds", 30)
    f.check(period >= sleep_s + grace_s + FLUSH_MARGIN_S,
            f"terminationGracePeriodSeconds {period} >= preStop {sleep_s:g} + "
            f"GRACE_S {grace_s:g} + flush {FLUSH_MARGIN_S}")

    f.check(service["spec"]["selector"].items() <= labels.items(),
            "Service selects the Deployment's pods")
    service_ports = {p["name"]: p for p in service["spec"]["ports"]}
    f.check(service_ports.get("proxy", {}).get("port") == 8080, "Service port 8080 named proxy")
    f.check(service_ports.get("admin", {}).get("port") == 9090
            and service_ports["admin"].get("targetPort") in ("admin", admin_port),
            "Service port 9090 named admin, to the admin listener")

    f.check(hpa["apiVersion"] == "autoscaling/v2", "HPA is autoscaling/v2")
    target = hpa["spec"]["scaleTargetRef"]
    f.check((target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"]),
            "HPA scales the Deployment")
    f.check(any(m.get("resource", {}).get("name") == "cpu" for m in hpa["spec"]["metrics"]),
            "HPA scales on CPU")
    f.check(hpa["spec"].get("minReplicas", 1) >= 2, "HPA keeps at least 2 replicas (PDB room)")
    f.check(pdb["apiVersion"] == "policy/v1", "PDB is policy/v1")
    f.check(pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(),
            "PDB selects the Deployment's pods")
    return grace_s


def main() -> int:
    f = Findings()
    check_dockerfile(f)
    check_packaging(f)
    grace_s = check_kubernetes(f)
    check_compose(f, grace_s)
    print(f"deploy/: {f.passed} checks ok, {len(f.problems)} problems")
    return 1 if f.problems else 0


if __name__ == "__main__":
    sys.exit(main())
