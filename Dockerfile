# Container image of kanban-doctor: a static binary on distroless/static, run as a numeric
# non-root user. Build it with `make image` (which passes VERSION and REVISION from git), or
#   docker build --build-arg VERSION=v0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t kanban-doctor .
# In Kubernetes set runAsUser/runAsGroup to the gateway's UID (deploy/kubernetes/sidecar.yaml).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X github.com/kanban-doctor/kanban-doctor/reports.version=${VERSION} -X github.com/kanban-doctor/kanban-doctor/reports.revision=${REVISION}" \
      -o /out/kanban-doctor ./cmd/kanban-doctor

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/kanban-doctor /usr/local/bin/kanban-doctor
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/kanban-doctor"]
CMD ["watch", "--listen=0.0.0.0:9464", "/data/hermes"]
