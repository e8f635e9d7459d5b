# provision as a container image, for Azure DevOps, GitLab and other CI services that run jobs
# in containers:
#
#   docker build -t provision .
#   docker run --rm -v "$PWD:/work" -w /work provision plan chats/ --state ...
#
# The dependencies come from requirements/action.lock with --require-hashes (the same lock the
# GitHub Action installs), this checkout with --no-deps --no-index: nothing unhashed is
# downloaded. The tool runs as an unprivileged user. Pin the base image by digest in your own
# registry if your policy asks for it (`FROM python:3.12-slim@sha256:...`).
FROM python:3.12-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY requirements/action.lock requirements/action.lock
RUN python -m venv /opt/provision \
    && /opt/provision/bin/python -m pip install --quiet --require-hashes --only-binary :all: \
        -r requirements/action.lock
COPY pyproject.toml README.md LICENSE MANIFEST.in ./
COPY provisioner provisioner
RUN /opt/provision/bin/python -m pip install --quiet --no-deps --no-build-isolation --no-index .

FROM python:3.12-slim
COPY --from=build /opt/provision /opt/provision
RUN useradd --create-home --uid 10001 provision
USER provision
WORKDIR /work
ENV PATH=/opt/provision/bin:$PATH NO_COLOR=1 PYTHONDONTWRITEBYTECODE=1
ENTRYPOINT ["provision"]
CMD ["--help"]
