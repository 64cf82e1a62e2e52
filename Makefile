# Slipway. `make test` is what CI runs (see .ci/run).
GO ?= go
BIN := bin/slipway

.PHONY: build test vet unit e2e fuzz clean dev

build:
	$(GO) build -o $(BIN) ./cmd/slipway

dev: build
	./$(BIN) dev

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

# Unit and in-process cluster tests, with the race detector.
unit:
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v /e2e)

# End-to-end tests: real `slipway dev` clusters, the real heroku CLI.
e2e:
	$(GO) test -count=1 -timeout 20m -v ./e2e/

# All tests. CI runs this.
test: vet unit e2e

# A short run of every fuzz target.
fuzz:
	$(GO) test -run XXX -fuzz FuzzDecodeCommand -fuzztime 30s ./fsm
	$(GO) test -run XXX -fuzz FuzzApply -fuzztime 30s ./fsm
	$(GO) test -run XXX -fuzz FuzzRequestBodies -fuzztime 30s ./api

clean:
	rm -rf bin
