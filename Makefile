# Builds kanban-doctor with its version and VCS revision stamped in (shown by --version and in
# kanban_doctor_build_info), and its container image.
#   make build                   # ./kanban-doctor
#   make image IMAGE=ghcr.io/you/kanban-doctor
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE    ?= kanban-doctor
TAG      ?= $(VERSION)
PKG      := github.com/kanban-doctor/kanban-doctor
LDFLAGS  := -X $(PKG)/reports.version=$(VERSION) -X $(PKG)/reports.revision=$(REVISION)

.PHONY: build image test
build:
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o kanban-doctor ./cmd/kanban-doctor

image:
	docker build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE):$(TAG) .

test:
	.ci/run
