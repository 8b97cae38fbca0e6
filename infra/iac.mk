# IaC checks and Lambda packaging. Included by the top-level Makefile (`include infra/iac.mk`).
#
#   make iac-test            cfn-lint, checkov, python-hcl2, terraform fmt -check (if terraform
#                            is installed) and pytest tests/iac; tools pinned in
#                            infra/iac-requirements.txt, installed into .venv-iac/
#   make iac-sync            rewrite the copies embedded in cloudformation/*.yaml
#   make package [ARCH=x86_64] Lambda zips with cargo-lambda and zig (pip packages installed into
#                            .venv-iac/package): target/lambda/<binary>/bootstrap.zip, for arm64
#                            by default as the templates deploy (ARCH=x86_64 with
#                            LambdaArchitecture / lambda_architecture = x86_64); release builds
#                            without debug info, symbols stripped; tests/iac/check_package.py then
#                            checks every zip's bootstrap (ELF machine, no debug sections)

IAC_VENV      ?= .venv-iac
IAC_REQS      := infra/iac-requirements.txt
IAC_PYTHON    ?= python3
IAC_TOOLS     := $(IAC_VENV)/tools/bin
IAC_CHECKOV   := $(IAC_VENV)/checkov/bin/checkov
IAC_TEMPLATES := $(wildcard cloudformation/*.yaml)
ARCH          ?= arm64
LAMBDA_PACKAGE := tidemark-lambda
LAMBDA_BINARIES := tidemark-seeder tidemark-worker tidemark-delta tidemark-checkpoint tidemark-restore tidemark-api tidemark-scrub tidemark-alert

.PHONY: iac-test iac-venv iac-lint iac-checkov iac-hcl iac-fmt iac-pytest iac-sync package

# One venv per "# venv: NAME" group of infra/iac-requirements.txt, rebuilt when the file changes.
$(IAC_VENV)/%/.installed: $(IAC_REQS)
	rm -rf $(IAC_VENV)/$*
	$(IAC_PYTHON) -m venv $(IAC_VENV)/$*
	grep -E '#[[:space:]]*venv:[[:space:]]*$*[[:space:]]*$$' $(IAC_REQS) | sed 's/[[:space:]]*#.*//' > $(IAC_VENV)/$*.txt
	$(IAC_VENV)/$*/bin/pip install --quiet --disable-pip-version-check -r $(IAC_VENV)/$*.txt
	touch $@

iac-venv: $(IAC_VENV)/tools/.installed $(IAC_VENV)/checkov/.installed

iac-lint: $(IAC_VENV)/tools/.installed
	@echo "== cfn-lint $(IAC_TEMPLATES)"
	$(IAC_TOOLS)/cfn-lint $(IAC_TEMPLATES)

# --skip-download and BC_SKIP_MAPPING keep checkov off the network (no guideline/mapping fetch).
iac-checkov: $(IAC_VENV)/checkov/.installed
	@echo "== checkov (terraform/, cloudformation/)"
	BC_SKIP_MAPPING=TRUE $(IAC_CHECKOV) --quiet --compact --skip-download \
		-d terraform --framework terraform
	BC_SKIP_MAPPING=TRUE $(IAC_CHECKOV) --quiet --compact --skip-download \
		-d cloudformation --framework cloudformation

iac-hcl: $(IAC_VENV)/tools/.installed
	@echo "== python-hcl2"
	$(IAC_TOOLS)/python tests/iac/check_hcl.py terraform

iac-fmt:
	@echo "== terraform fmt -check"
	@if command -v terraform >/dev/null 2>&1; then \
		TF_CLI_CONFIG_FILE=/dev/null terraform fmt -check -recursive -diff terraform && echo "terraform fmt: clean"; \
	else \
		echo "terraform not installed: fmt -check skipped"; \
	fi

iac-pytest: $(IAC_VENV)/tools/.installed
	@echo "== pytest tests/iac"
	$(IAC_TOOLS)/python -m pytest tests/iac -q -p no:cacheprovider

iac-test: iac-lint iac-checkov iac-hcl iac-fmt iac-pytest

iac-sync: $(IAC_VENV)/tools/.installed
	$(IAC_TOOLS)/python tests/iac/sync_embedded.py

# cargo-lambda finds zig through the venv's python (ziglang) on PATH.
package: $(IAC_VENV)/package/.installed
	@case "$(ARCH)" in arm64|aarch64) ;; x86_64|x86-64|amd64) ;; *) echo "ARCH must be x86_64 or arm64" >&2; exit 2;; esac
	@# cargo-lambda cross-compiles with rustup's standard library for the target; rustup
	@# installs it from the Rust distribution server if it is missing (once).
	rustup target add $(if $(filter arm64 aarch64,$(ARCH)),aarch64-unknown-linux-gnu,x86_64-unknown-linux-gnu)
	CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=symbols \
	PATH="$(abspath $(IAC_VENV)/package/bin):$$PATH" cargo lambda build --release --output-format zip --lambda-dir target/lambda \
		--package $(LAMBDA_PACKAGE) $(if $(filter arm64 aarch64,$(ARCH)),--arm64,--x86-64)
	@for b in $(LAMBDA_BINARIES); do \
		test -f target/lambda/$$b/bootstrap.zip || { echo "missing target/lambda/$$b/bootstrap.zip" >&2; exit 1; }; \
	done
	@echo $(if $(filter arm64 aarch64,$(ARCH)),arm64,x86_64) > target/lambda/ARCHITECTURE
	@echo "target/lambda/<binary>/bootstrap.zip built for $$(cat target/lambda/ARCHITECTURE)"
	$(IAC_PYTHON) tests/iac/check_package.py target/lambda $$(cat target/lambda/ARCHITECTURE)
