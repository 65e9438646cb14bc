"""One vLLM Deployment + Service per variant (Kubernetes objects as plain dicts).

Each variant is an unmodified vLLM OpenAI server from the official image;
scaling out inside a variant is vLLM's own business (tensor/expert parallelism
over the pod's GPUs, `replicas` for more copies behind the Service).
"""

from __future__ import annotations

APP = "moe-prune-serve"


def labels(component: str, variant: str | None = None) -> dict[str, str]:
    selected = {"app.kubernetes.io/name": APP, "app.kubernetes.io/component": component}
    if variant is not None:
        selected["moeprune.io/variant"] = variant
    return selected


def engine_name(variant: str) -> str:
    return f"moeprune-vllm-{variant}"


def health_probe(port_name: str, period: int, failures: int) -> dict:
    return {"httpGet": {"path": "/health", "port": port_name}, "periodSeconds": period,
            "timeoutSeconds": 5, "failureThreshold": failures}


def engine_deployment(variant: str, spec: dict, values: dict) -> dict:
    vllm, volume = values["vllm"], values["modelVolume"]
    gpus = int(spec.get("gpus", 1))
    args = [
        spec["model"], "--served-model-name", variant, "--host", "0.0.0.0", "--port", str(vllm["port"]),
        "--tensor-parallel-size", str(spec.get("tensorParallelSize", gpus)), *spec.get("args", []),
    ]
    resources = {key: dict(value) for key, value in spec.get("resources", {}).items()}
    resources.setdefault("limits", {})["nvidia.com/gpu"] = gpus
    resources.setdefault("requests", {})["nvidia.com/gpu"] = gpus
    container = {
        "name": "vllm",
        "image": vllm["image"],
        # The image's entrypoint is `vllm serve`; these are its arguments.
        "args": args,
        "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}, {"name": "VLLM_NO_USAGE_STATS", "value": "1"}],
        "ports": [{"name": "http", "containerPort": int(vllm["port"])}],
        "resources": resources,
        "volumeMounts": [
            {"name": "models", "mountPath": volume.get("mountPath", "/models"), "readOnly": True},
            {"name": "shm", "mountPath": "/dev/shm"},
        ],
        # Loading a large checkpoint takes minutes: the startup probe allows 15,
        # after which liveness restarts a wedged engine within 45 s.
        "startupProbe": health_probe("http", 10, 90),
        "readinessProbe": health_probe("http", 10, 3),
        "livenessProbe": health_probe("http", 15, 3),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": engine_name(variant), "namespace": values["namespace"],
                     "labels": labels("engine", variant)},
        "spec": {
            "replicas": int(spec.get("replicas", 1)),
            "selector": {"matchLabels": labels("engine", variant)},
            # Never run two copies of a GPU-sized engine during a rollout.
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": labels("engine", variant)},
                "spec": {
                    "containers": [container],
                    "volumes": [
                        {"name": "models", "persistentVolumeClaim": {"claimName": volume["claimName"],
                                                                     "readOnly": True}},
                        # vLLM's workers exchange tensors through shared memory.
                        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}},
                    ],
                },
            },
        },
    }


def engine_service(variant: str, values: dict) -> dict:
    port = int(values["vllm"]["port"])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": engine_name(variant), "namespace": values["namespace"],
                     "labels": labels("engine", variant)},
        "spec": {
            "selector": labels("engine", variant),
            "ports": [{"name": "http", "port": port, "targetPort": "http"}],
        },
    }


def engine_url(variant: str, values: dict) -> str:
    return f"http://{engine_name(variant)}.{values['namespace']}.svc:{values['vllm']['port']}"
