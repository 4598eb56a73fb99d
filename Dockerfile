# Levqor: one image with every command (ingest, workers, scheduler, levqor).
# compose.yaml picks the command per service.

FROM golang:1.26-bookworm AS build
WORKDIR /src

# Modules first, so this layer is reused until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./cmd/levqor ./cmd/ingest ./cmd/workers ./cmd/scheduler

# Static binaries on a minimal base: no shell, no package manager, non-root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER nonroot:nonroot
EXPOSE 8080 9090
CMD ["/usr/local/bin/ingest"]
