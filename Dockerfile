# syntax=docker/dockerfile:1
# Static, non-root image of the invalidator daemon.
#   docker build -t invalidator:dev .
#   docker run --rm -p 9187:9187 -e INVALIDATOR_POSTGRES_URL=… -e INVALIDATOR_REDIS_URL=… \
#     -v "$PWD/rules.yaml:/etc/invalidator/rules.yaml:ro" invalidator:dev

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so that source edits reuse the module cache layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o invalidator ./cmd/invalidator

# distroless/static: CA certificates (rediss://, sslmode=verify-full),
# tzdata and /etc/passwd with the nonroot user; no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/invalidator /invalidator
USER 65532:65532
EXPOSE 9187
ENTRYPOINT ["/invalidator"]
CMD ["run"]
