# Cordon: the two commands a newcomer needs are `make run` and `make test`.
GO        ?= go
BIN       ?= bin/cordon
FUZZTIME  ?= 10s
# Policy documents are kilobytes: with the default 60s minimization per new
# input the fuzzer would spend its whole budget minimizing.
FUZZMINTIME ?= 1s
# Debian packages the tests use: a real redis-server, dig for DNS checks,
# node for PAC evaluation, chromium for page tests.
TEST_DEBS ?= redis-server dnsutils knot-dnsutils nodejs chromium
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run build test test-deps check bench fuzz compare clean

## run: build and start the whole gateway on the embedded default
run: build
	./$(BIN) serve

build:
	$(GO) build -o $(BIN) ./cmd/cordon

## test: install what the tests need, then run vet, format check and every test
test: test-deps check
	$(GO) test -race -count=1 -timeout 20m ./...

test-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v dig >/dev/null          || missing="$$missing dnsutils"; \
	command -v kdig >/dev/null         || missing="$$missing knot-dnsutils"; \
	command -v node >/dev/null         || missing="$$missing nodejs"; \
	command -v chromium >/dev/null     || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## bench: the benchmarks quoted in the README
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./categorizer/ ./policies/ ./proxy/ ./proxy/dnsfilter/

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINTIME) $$pkg || exit 1; \
		done; \
	done

## compare: side-by-side benchmark against Squid and Unbound (see loadtest/)
compare:
	bash loadtest/compare.sh

clean:
	rm -rf bin
