# syntax=docker/dockerfile:1
# Static, non-root image of the invalidator daemon.
#   docker build --build-arg COMMIT=$(git rev-parse --short=12 HEAD) -t invalidator:dev .
#   docker run --rm -p 9187:9187 -e INVALIDATOR_POSTGRES_URL=… -e INVALIDATOR_REDIS_URL=… \
#     -v "$PWD/rules.yaml:/etc/invalidator/rules.yaml:ro" invalidator:dev

FROM golang:1.26-bookworm AS build
WORKDIR /src
# Dependencies first, so that source edits reuse the module cache layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# .git stays out of the build context (.dockerignore): the commit that
# `invalidator version` prints comes as a build argument (see the top).
ARG COMMIT=unknown
RUN make build BIN=invalidator COMMIT="$COMMIT"

# distroless/static: CA certificates (rediss://, sslmode=verify-full),
# tzdata and /etc/passwd with the nonroot user; no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/invalidator /invalidator
USER 65532:65532
EXPOSE 9187
ENTRYPOINT ["/invalidator"]
CMD ["run"]
