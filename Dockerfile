# Serving image: Ray Serve + ONNX Runtime + tokenizers. No torch, no transformers.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 RAY_USAGE_STATS_ENABLED=0 OMP_WAIT_POLICY=PASSIVE
WORKDIR /app
COPY pyproject.toml README.md ./
COPY serve_app ./serve_app
COPY deployments ./deployments
COPY training ./training
# The `emotion-monitor` command (CMD, the RayService's model pull, the retrain job) lives here.
COPY tooling ./tooling
RUN pip install --no-cache-dir .
COPY serve_config.yaml ./
COPY models ./models
COPY scripts/keywords.txt ./scripts/keywords.txt
EXPOSE 8000 8265
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"
# Inside the container Serve must listen on all interfaces for the published port to reach it
# (docker-compose.yml publishes it on the host's loopback only).
CMD ["bash", "-c", "emotion-monitor cluster config --out /tmp/serve_config.yaml --http-host 0.0.0.0 && ray start --head --dashboard-host 0.0.0.0 --metrics-export-port 8080 --num-cpus ${RAY_NUM_CPUS:-2} && exec emotion-monitor run /tmp/serve_config.yaml"]
