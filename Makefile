# streamd — the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
BIN     ?= bin/streamd
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Packages for the race detector; the whole module.
PKGS    ?= ./...

.PHONY: build run test test-short vet fuzz bench bench-origin bench-abr testdata deps clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/streamd

## run: install ffmpeg if missing, build, and serve on the embedded default config.
run: build
	bash scripts/deps.sh run
	./$(BIN) serve $(ARGS)

## test: install what the tests need (ffmpeg, chromium) and run the whole suite under -race.
## scripts/testreport prints failures and the counts; under CI=true a skip
## not listed in scripts/skip-allow.txt fails the run.
test:
	bash scripts/deps.sh test
	$(GO) vet $(PKGS)
	$(GO) build -o bin/testreport ./scripts/testreport
	bash scripts/testenv.sh ./bin/testreport -allow scripts/skip-allow.txt -- \
		$(GO) test -json -race -count=1 -timeout 20m $(PKGS)

## test-short: unit tests only, no outside programs.
test-short:
	$(GO) test -short -count=1 $(PKGS)

## fuzz: run every fuzz target for FUZZTIME each (seeds already run in `make test`).
FUZZTIME ?= 20s
fuzz:
	bash scripts/fuzz.sh $(FUZZTIME)

## bench: the live passthrough figures in README.md; bench-origin and bench-abr the others.
bench: build
	bash scripts/deps.sh bench
	$(GO) run ./bench $(ARGS)

bench-origin: build
	bash scripts/deps.sh bench
	bash scripts/testenv.sh $(GO) run ./bench/origin $(ARGS)

bench-abr: build
	bash scripts/deps.sh bench
	$(GO) run ./bench/abr -paced $(ARGS)

## testdata: regenerate the sample clips in testdata/.
testdata:
	bash scripts/deps.sh run
	bash testdata/gen.sh

deps:
	bash scripts/deps.sh test

clean:
	rm -rf bin
