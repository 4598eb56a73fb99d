# Common developer tasks. The full test suite is scripts/test (what CI runs).

GO ?= go

.PHONY: all build run test lint image compose-config clean

all: build

## build: compile every command into ./bin/
build:
	$(GO) build -o bin/ ./cmd/...

## run: start everything in one process (dev mode: embedded NATS + SQLite)
run:
	$(GO) run ./cmd/levqor dev

## test: the full test suite, with its services (same as CI)
test:
	scripts/test

## lint: static checks
lint:
	$(GO) vet ./...

## image: build the container image used by compose.yaml (needs a Docker engine)
image:
	docker build -t levqor:local .

## compose-config: validate compose.yaml offline
compose-config:
	STRIPE_WEBHOOK_SECRET=x STRIPE_API_KEY=x docker-compose -f compose.yaml config -q

clean:
	rm -rf bin/
