# sentinel-tunnel. Every target runs `make setup` first, which installs what it needs.
SHELL := bash
DENO := .tools/bin/deno
export RUST_BACKTRACE := 0
export DENO_NO_UPDATE_CHECK := 1

# What the tunnel needs: the network, its config, the variables named by passwordEnv, a log file.
RUN_PERMISSIONS := --allow-net --allow-read --allow-env --allow-write
BUNDLE := dist/sentinel-tunnel.js
CONFIG ?= config/example.jsonc

.PHONY: setup test unit integration lint fmt run demo bundle clean

setup:
	@bash .ci/setup.sh

$(BUNDLE): setup deno.json deno.lock main.ts $(wildcard src/*.ts)
	@mkdir -p dist
	@$(DENO) bundle --quiet --frozen --platform=deno --output=$(BUNDLE) main.ts

bundle: $(BUNDLE)

# Tests run the tunnel through the bundle, so what ships is what is tested.
test: setup bundle
	@SENTINEL_TUNNEL_ENTRY=$(BUNDLE) bash .ci/test.sh

lint: setup
	@$(DENO) fmt --check
	@$(DENO) lint
	@$(DENO) check main.ts src/ tests/

fmt: setup
	@$(DENO) fmt

run: setup
	@$(DENO) run $(RUN_PERMISSIONS) main.ts $(CONFIG)

demo: setup bundle
	@SENTINEL_TUNNEL_ENTRY=$(BUNDLE) $(DENO) run --allow-all tests/demo.ts $(DEMO_ARGS)

clean:
	rm -rf dist
