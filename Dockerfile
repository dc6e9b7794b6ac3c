# Meridian's image for machines with a container engine: a static binary on distroless/static,
# running as the nonroot user (65532). `make image` builds the same layout without an engine.
#   docker build --build-arg VERSION=$(cat VERSION) --build-arg REVISION=$(git rev-parse HEAD) -t meridian .
FROM golang:1.26 AS build
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -tags slicelabels -trimpath \
      -ldflags "-X github.com/prometheus/common/version.Version=${VERSION} -X github.com/prometheus/common/version.Revision=${REVISION}" \
      -o /out/meridian ./cmd/meridian

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="meridian" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/meridian-obs/meridian" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/meridian /usr/bin/meridian
USER 65532:65532
EXPOSE 10901 10902
ENTRYPOINT ["/usr/bin/meridian"]
