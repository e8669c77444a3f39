# Build stage: install the package and its pinned dependencies into a virtual environment.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY gitlab_registry_usage_rest ./gitlab_registry_usage_rest
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt .

# Run stage: the virtual environment only, as an unprivileged user.
FROM python:3.11-slim
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin registry-usage \
    && install -d -o registry-usage -g registry-usage -m 0750 /var/lib/gitlab-registry-usage-rest
USER registry-usage
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
# Set [general] socket_host = 0.0.0.0 in the mounted config to reach the service from outside.
EXPOSE 5000
VOLUME /var/lib/gitlab-registry-usage-rest
# /health answers 503 without data or with stale data. The slim image has no curl; Python is at hand.
# (Adjust the URL if the config changes socket_port or server_prefix.)
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]
ENTRYPOINT ["gitlab-registry-usage-rest"]
CMD ["-c", "/etc/gitlab_registry_usage_rest.conf"]
