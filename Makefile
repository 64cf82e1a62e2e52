# Slipway. `make test` is what CI runs (see .ci/run).
GO ?= go
BIN := bin/slipway

.PHONY: build test vet unit e2e fuzz clean dev build-linux testbed testbed-test drills

build:
	$(GO) build -o $(BIN) ./cmd/slipway

dev: build
	./$(BIN) dev

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...

# Unit and in-process cluster tests, with the race detector.
unit:
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v -e /e2e -e /testbed)

# End-to-end tests: real `slipway dev` clusters, the real heroku CLI.
e2e:
	$(GO) test -count=1 -timeout 20m -v ./e2e/

# The network-namespace testbed (needs root): install.sh, the Vagrantfile,
# a 3-node cluster, faults, and the fast variant of every failure drill,
# each printing its report. One package at a time, so the drills have the
# machine's CPUs to themselves.
testbed-test:
	$(GO) test -race -count=1 -p 1 -timeout 20m -v ./testbed/...

# The long variant of the drills: 6 nodes (2 per zone), longer phases.
drills:
	SLIPWAY_DRILLS=long $(GO) test -count=1 -timeout 60m -v -run TestDrills ./testbed/drills

# A testbed by hand: make testbed ARGS="up", then ARGS="status", "kill n2",
# "isolate zone:c", "heal", "drill zone-loss" ... (docs/drills.md).
ARGS ?= up
testbed:
	$(GO) run ./testbed/cmd/testbed $(ARGS)

# The binary the Vagrantfile's VMs run.
LINUX_ARCH ?= amd64
build-linux:
	GOOS=linux GOARCH=$(LINUX_ARCH) $(GO) build -o bin/slipway-linux-$(LINUX_ARCH) ./cmd/slipway

# All tests. CI runs this.
test: vet unit e2e testbed-test

# A short run of every fuzz target.
fuzz:
	$(GO) test -run XXX -fuzz FuzzDecodeCommand -fuzztime 30s ./fsm
	$(GO) test -run XXX -fuzz FuzzApply -fuzztime 30s ./fsm
	$(GO) test -run XXX -fuzz FuzzRequestBodies -fuzztime 30s ./api
	$(GO) test -run XXX -fuzz FuzzCheckArchive -fuzztime 30s ./blob
	$(GO) test -run XXX -fuzz FuzzUnpack -fuzztime 30s -fuzzminimizetime 2s ./dyno
	$(GO) test -run XXX -fuzz FuzzParseDrainURL -fuzztime 30s ./logplex
	$(GO) test -run XXX -fuzz FuzzSplitText -fuzztime 30s ./logplex
	$(GO) test -run XXX -fuzz FuzzParseRequest -fuzztime 30s ./router
	$(GO) test -run XXX -fuzz FuzzParseHead -fuzztime 30s ./router
	$(GO) test -run XXX -fuzz FuzzNormalizeHost -fuzztime 30s ./router
	$(GO) test -run XXX -fuzz FuzzRequestID -fuzztime 30s ./router
	$(GO) test -run XXX -fuzz FuzzParseProcfile -fuzztime 30s ./deploy
	$(GO) test -run XXX -fuzz FuzzReadCommands -fuzztime 30s ./deploy

clean:
	rm -rf bin
