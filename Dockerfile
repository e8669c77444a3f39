# Build stage: install the package and its pinned dependencies into a virtual environment.
FROM python:3.11-slim AS build
WORKDIR /src
COPY setup.py pyproject.toml README.md LICENSE constraints.txt ./
COPY gitlab_registry_usage_rest ./gitlab_registry_usage_rest
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check -c constraints.txt .

# Run stage: the virtual environment only, as an unprivileged user.
FROM python:3.11-slim
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin registry-usage
USER registry-usage
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
# Set [general] socket_host = 0.0.0.0 in the mounted config to reach the service from outside.
EXPOSE 5000
ENTRYPOINT ["gitlab-registry-usage-rest"]
CMD ["-c", "/etc/gitlab_registry_usage_rest.conf"]
