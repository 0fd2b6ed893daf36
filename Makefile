# Cordon: the two commands a newcomer needs are `make run` and `make test`.
GO        ?= go
BIN       ?= bin/cordon
# Fuzz budgets are execution counts (N x), not durations: Go 1.26's fuzz
# coordinator can report a bare "context deadline exceeded" failure when a
# duration budget ends while a worker is mid-input (golang/go#75804, fixed in
# Go 1.27); a count has no deadline to race. FUZZTIME=30s still works.
FUZZTIME  ?= 20000x
# Policy documents are kilobytes: with the default 60s minimization per new
# input the fuzzer would spend its whole budget minimizing.
FUZZMINTIME ?= 200x
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

# What git sees in the work tree, ignored files included: a test that
# writes anywhere but under t.TempDir() changes it (empty outside git).
TREE_STATE = git status --porcelain --ignored --untracked-files=all 2>/dev/null

## test: install what the tests need, then run vet, format check and every
## test; fails when the tests left or changed files in the tree
test: test-deps check
	@echo "$(GO) test -race -count=1 -timeout 20m ./..."; state=$$(mktemp); $(TREE_STATE) >$$state; \
	$(GO) test -race -count=1 -timeout 20m ./... || { rm -f $$state; exit 1; }; \
	if ! $(TREE_STATE) | diff -u --label before --label after $$state -; then \
		rm -f $$state; echo "make test: the tests changed the tree (diff above); tests write only under t.TempDir()"; exit 1; \
	fi; rm -f $$state

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
