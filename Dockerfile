# syntax=docker/dockerfile:1
#
# sessiongate: a static binary on distroless, running as non-root.
#
#   docker build -t sessiongate:local --build-arg VERSION=$(git describe --always --dirty) .
#   docker run --rm sessiongate:local version
#
# Ports: 9001 ext_authz gRPC + grpc.health.v1, 9002 JWKS/health/metrics HTTP,
# 9003 admin API (keep it off public networks).
#
# Without Docker, `make image-oci` builds the same image (image/: same base
# user, entrypoint, command, binary path, ports and labels, checked by
# image/TestDockerfileAgrees) with go-containerregistry, plus an SPDX SBOM.
# Where gcr.io is unreachable it builds a distroless-equivalent base from
# Debian's CA bundle and a nonroot (65532) passwd/group instead of pulling it.

ARG GO_VERSION=1.26

# Build on the builder's own platform and cross-compile: CGO is off, so Go
# needs no target toolchain and multi-arch builds need no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first, so that a source change does not re-download modules.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
ARG VERSION=dev
ARG TARGETOS TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/sessiongate ./cmd/sessiongate

# static: no libc, no shell, CA certificates (for rediss://) and tzdata only.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title=sessiongate \
      org.opencontainers.image.source=https://github.com/sessiongate/sessiongate \
      org.opencontainers.image.revision=${REVISION} \
      org.opencontainers.image.version=${VERSION} \
      org.opencontainers.image.base.name=gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sessiongate /usr/local/bin/sessiongate
USER nonroot:nonroot
EXPOSE 9001 9002 9003
ENTRYPOINT ["/usr/local/bin/sessiongate"]
CMD ["serve", "--config", "/etc/sessiongate/config.yaml"]
