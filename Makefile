# loaderd's front door. `make demo` builds bin/loaderd and runs its demo;
# `make test` runs the test command of the README and of .ci/run.
#
# Two things `go run`/`go test` alone do not: CGO_CFLAGS gains
# -Wno-deprecated-declarations, because go-nvml's cgo code calls NVML
# functions that nvml.h marks deprecated and a first build prints ~145 lines
# of warnings about them; and scripts/gobuild shows progress while a first
# build compiles ~560 packages (3 minutes on 2 cores). Plain go commands
# work the same otherwise.

GO ?= go
# Go's default is "-O2 -g"; keep it and add the flag.
export CGO_CFLAGS := $(or $(CGO_CFLAGS),-O2 -g) -Wno-deprecated-declarations

# Flags for `make demo`, e.g. make demo DEMO_FLAGS='--keep-serving'.
DEMO_FLAGS ?=

.PHONY: all build demo test help
all: build

help:
	@echo 'make build   build bin/loaderd (progress shown)'
	@echo 'make demo    build, then run `loaderd demo $$DEMO_FLAGS`'
	@echo 'make test    go vet ./... && go test ./..., after compiling with progress'

build:
	@scripts/gobuild -o bin/loaderd ./cmd/loaderd

demo: build
	bin/loaderd demo $(DEMO_FLAGS)

test:
	@scripts/gobuild -test ./...
	$(GO) vet ./... && $(GO) test ./...
