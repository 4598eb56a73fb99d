# Levqor: one image with every command (ingest, workers, scheduler, levqor).
# compose.yaml picks the command per service.

FROM golang:1.26-bookworm AS build
WORKDIR /src

# Modules first, so this layer is reused until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/levqor ./cmd/ingest ./cmd/workers ./cmd/scheduler

# Static binaries on a slim Debian with the PostgreSQL client tools:
# postgres sources run pg_dump and restores pg_restore, which must be at
# least as new as the servers they work with (trixie ships PostgreSQL 17's).
# Non-root, as uid 65532 with its home at /home/nonroot (compose mounts the
# blob volume there).
FROM debian:trixie-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --create-home --home-dir /home/nonroot --shell /usr/sbin/nologin nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
EXPOSE 8080 9090
CMD ["/usr/local/bin/ingest"]
