# API test tools. Included by the top-level Makefile (`include infra/api.mk`).
#
#   make api-venv            schemathesis, pinned in infra/api-requirements.txt, installed into
#                            .venv-api/ (rebuilt when the file changes); tests/e2e/api.rs runs it
#                            against `tidemark serve` on the local stack

API_VENV   ?= .venv-api
API_REQS   := infra/api-requirements.txt
API_PYTHON ?= python3

.PHONY: api-venv

$(API_VENV)/.installed: $(API_REQS)
	rm -rf $(API_VENV)
	$(API_PYTHON) -m venv $(API_VENV)
	$(API_VENV)/bin/pip install --quiet --disable-pip-version-check -r $(API_REQS)
	touch $@

api-venv: $(API_VENV)/.installed
