# sentinel-tunnel. Every target runs `make setup` first, which installs what it needs.
SHELL := bash
DENO := .tools/bin/deno
export RUST_BACKTRACE := 0
export DENO_NO_UPDATE_CHECK := 1

# What the tunnel needs: the network, its config, the variables named by passwordEnv, a log file.
RUN_PERMISSIONS := --allow-net --allow-read --allow-env --allow-write --allow-run
BUNDLE := dist/sentinel-tunnel.js
CONFIG ?= config/example.jsonc

# What `deno compile` bakes into dist/sentinel-tunnel and every release binary: this is the one
# list. A compiled binary cannot be given permissions per config, so it holds all the tunnel may
# need (run for hooks, write for a log file) and revokes at startup what its config does not use.
COMPILE_PERMISSIONS := --allow-net --allow-read --allow-env --allow-write --allow-run
COMPILE_FLAGS := --quiet --frozen $(COMPILE_PERMISSIONS)
BINARY := dist/sentinel-tunnel
STANDIN := dist/sentinel-tunnel-standin
RELEASE_DIR := dist/release
RELEASE_TARGETS := x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu x86_64-apple-darwin \
  aarch64-apple-darwin x86_64-pc-windows-msvc
SHA256 := $(shell command -v sha256sum >/dev/null 2>&1 && echo sha256sum || echo shasum -a 256)

# Fails unless binary $(1) runs and reports sentinel-tunnel's version built with the pinned Deno.
define check_binary
version=$$("$(1)" --version 2>&1) || { echo "make: $(1) --version failed: $$version" >&2; exit 1; }; \
case $$version in \
  "sentinel-tunnel "*"deno $$(cat .deno-version)"*) echo "make: $(1): $$version" ;; \
  *) rm -f "$(1)"; echo "make: $(1) --version printed \"$${version%%$$'\n'*}\", not sentinel-tunnel built with Deno $$(cat .deno-version): DENORT_BIN must be the denort binary of that Deno release, not deno" >&2; exit 1 ;; \
esac
endef

.PHONY: setup test test-deno-run unit integration lint fmt run demo bundle standin build release image schema print-compile-flags bench bench-smoke clean

setup:
	@bash .ci/setup.sh

$(BUNDLE): setup deno.json deno.lock main.ts $(wildcard src/*/*.ts)
	@mkdir -p dist
	@$(DENO) bundle --quiet --frozen --platform=deno --output=$(BUNDLE) main.ts

bundle: $(BUNDLE)

# A stand-in for the compiled binary where denort cannot be had. deno compile compiles the bundle
# (below), so the stand-in runs those very bytes as the binary does: from any directory, with no
# deno.json, nothing from Deno's cache (a cache of its own, --cached-only), no prompts and
# COMPILE_PERMISSIONS. `make test` runs the suite through it, so the harness's binary path
# (SENTINEL_TUNNEL_BINARY) is what CI exercises.
$(STANDIN): $(BUNDLE) Makefile
	@rm -rf dist/standin-deno-dir && mkdir -p dist/standin-deno-dir
	@{ echo '#!/bin/sh'; \
	  echo '# sentinel-tunnel stand-in, made by `make standin`: the bundle run as the compiled binary runs.'; \
	  echo 'DENO_DIR="$(abspath dist/standin-deno-dir)"; export DENO_DIR'; \
	  echo 'exec "$(abspath $(DENO))" run --quiet --no-config --cached-only --no-prompt $(COMPILE_PERMISSIONS) "$(abspath $(BUNDLE))" "$$@"'; \
	} >$(STANDIN).tmp && chmod +x $(STANDIN).tmp && mv $(STANDIN).tmp $(STANDIN)
	@$(call check_binary,$(STANDIN))

standin: $(STANDIN)

# dist/sentinel-tunnel with deno compile, from the bundle: the binary, the stand-in, the image and
# the bundle users run hold the same JavaScript (and here Deno 2.9.6 overflowed its stack compiling
# main.ts itself). deno compile downloads a runtime (denort) from dl.deno.land unless DENORT_BIN
# names one; the machines here cannot reach it, so it compiles only with DENORT_BIN, or with
# DENORT_DOWNLOAD=1 where dl.deno.land is reachable (the release workflow).
build: bundle
	@set -euo pipefail; \
	if [ -z "$${DENORT_BIN:-}" ] && [ "$${DENORT_DOWNLOAD:-}" != 1 ]; then \
	  echo "make build: not compiling $(BINARY): deno compile downloads its runtime (denort) from dl.deno.land, which this machine cannot reach; set DENORT_BIN=/path/to/denort (Deno $$(cat .deno-version), this platform) to compile offline, or DENORT_DOWNLOAD=1 where dl.deno.land is reachable. Built $(BUNDLE) instead."; \
	  exit 0; \
	fi; \
	if [ -n "$${DENORT_BIN:-}" ]; then \
	  [ -f "$$DENORT_BIN" ] && [ -x "$$DENORT_BIN" ] || { echo "make build: DENORT_BIN=$$DENORT_BIN is not an executable file" >&2; exit 1; }; \
	fi; \
	rm -f $(BINARY); \
	$(DENO) compile $(COMPILE_FLAGS) --output $(BINARY) $(BUNDLE); \
	$(call check_binary,$(BINARY))

# Release artifacts in dist/release: a binary per target (deno compile cross-compiles, downloading
# each target's denort; DENORT_BIN, if set, serves the host target only; TESTED_BINARY, if set, is
# copied as the host target's binary, so that what the suite and the demo ran is what ships), the bundle, install.sh
# (its release repository filled in from GITHUB_REPOSITORY, as GitHub Actions sets it), a .sha256
# beside each file and SHA256SUMS over them all. Pick targets with RELEASE_TARGETS="...".
release: bundle
	@set -euo pipefail; \
	rm -rf $(RELEASE_DIR); mkdir -p $(RELEASE_DIR); \
	host=$$($(DENO) eval 'console.log(Deno.build.target)'); \
	if [ -n "$${TESTED_BINARY:-}" ] && [[ " $(RELEASE_TARGETS) " != *" $$host "* ]]; then \
	  echo "make release: TESTED_BINARY=$$TESTED_BINARY is for this host ($$host), which RELEASE_TARGETS does not list" >&2; exit 1; \
	fi; \
	if [ "$${GITHUB_ACTIONS:-}" = true ] && [ -z "$${GITHUB_REPOSITORY:-}" ]; then \
	  echo "make release: GITHUB_REPOSITORY is empty under GitHub Actions, so install.sh would name no repository; keep it in the environment (sudo -E)" >&2; exit 1; \
	fi; \
	for target in $(RELEASE_TARGETS); do \
	  file=$(RELEASE_DIR)/sentinel-tunnel-$$target; \
	  case $$target in *-windows-*) file=$$file.exe ;; esac; \
	  echo "make release: $$file"; \
	  if [ "$$target" = "$$host" ] && [ -n "$${TESTED_BINARY:-}" ]; then \
	    cp "$$TESTED_BINARY" "$$file"; \
	  elif [ "$$target" = "$$host" ] && [ -n "$${DENORT_BIN:-}" ]; then \
	    $(DENO) compile $(COMPILE_FLAGS) --target "$$target" --output "$$file" $(BUNDLE); \
	  else \
	    env -u DENORT_BIN $(DENO) compile $(COMPILE_FLAGS) --target "$$target" --output "$$file" $(BUNDLE); \
	  fi; \
	  if [ "$$target" = "$$host" ]; then $(call check_binary,$$file); fi; \
	done; \
	cp $(BUNDLE) $(RELEASE_DIR)/; \
	if [[ "$${GITHUB_REPOSITORY:-}" =~ ^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$$ ]]; then \
	  sed "s|^GITHUB_REPO=.*|GITHUB_REPO=\"$$GITHUB_REPOSITORY\"|" install.sh >$(RELEASE_DIR)/install.sh; \
	else \
	  echo "make release: GITHUB_REPOSITORY (owner/name) is not set, so $(RELEASE_DIR)/install.sh needs --base-url"; \
	  cp install.sh $(RELEASE_DIR)/install.sh; \
	fi; \
	cd $(RELEASE_DIR); \
	files=(*); \
	for file in "$${files[@]}"; do $(SHA256) "$$file" >"$$file.sha256"; done; \
	$(SHA256) "$${files[@]}" >SHA256SUMS; \
	echo "make release: $$(ls | wc -l | tr -d ' ') files in $(RELEASE_DIR)"

# The container image sentinel-tunnel:VERSION (and :latest): the pinned Deno, the libraries it links
# and the bundle, on an empty base, run as a non-root user (deploy/container/). Needs podman; as root
# it uses deploy/container/containers.conf. IMAGE=name builds it under another name.
image: bundle
	@bash deploy/container/build.sh >/dev/null

# config/schema.json is generated from the validator; tests/schema_test.ts keeps it in step.
schema: setup
	@$(DENO) eval --quiet 'import { configJsonSchema } from "./src/config/mod.ts"; Deno.writeTextFileSync("config/schema.json", JSON.stringify(configJsonSchema(), null, 2) + "\n");'
	@$(DENO) fmt --quiet config/schema.json
	@echo "make schema: wrote config/schema.json"

print-compile-flags:
	@echo $(COMPILE_FLAGS)

# Tests run the tunnel as the executable SENTINEL_TUNNEL_BINARY names (the compiled binary, as the
# release workflow tests it), or else the stand-in, which runs the bundle: what ships is what is tested.
test: setup bundle standin
	@SENTINEL_TUNNEL_BINARY="$${SENTINEL_TUNNEL_BINARY:-$(STANDIN)}" SENTINEL_TUNNEL_ENTRY=$(BUNDLE) bash .ci/test.sh

# The same suite with each tunnel started as `deno run dist/sentinel-tunnel.js`.
test-deno-run: setup bundle
	@env -u SENTINEL_TUNNEL_BINARY SENTINEL_TUNNEL_ENTRY=$(BUNDLE) bash .ci/test.sh

lint: setup
	@$(DENO) fmt --check
	@$(DENO) lint
	@$(DENO) check main.ts src/ tests/ bench/

fmt: setup
	@$(DENO) fmt

run: setup
	@$(DENO) run $(RUN_PERMISSIONS) main.ts $(CONFIG)

# A failover shown live on a throwaway local deployment. DEMO_ARGS="--tls" runs it over TLS-only
# Redis and Sentinels (certificates made with openssl); DEMO_ARGS also takes
# --failover=stop|kill|sentinel and --keep-running.
demo: setup bundle
	@SENTINEL_TUNNEL_ENTRY=$(BUNDLE) $(DENO) run --allow-all tests/demo.ts $(DEMO_ARGS)

# Starts its own deployment, tunnel and HAProxy; writes bench/RESULTS.md. BENCH_ARGS="--help" lists the flags.
bench: setup bundle
	@SENTINEL_TUNNEL_ENTRY=$(BUNDLE) $(DENO) run --allow-all bench/bench.ts $(BENCH_ARGS)

# One short round of every measurement, as CI runs it; asserts nothing about speed.
bench-smoke: setup bundle
	@SENTINEL_TUNNEL_ENTRY=$(BUNDLE) $(DENO) run --allow-all bench/bench.ts --smoke $(BENCH_ARGS)

clean:
	rm -rf dist
