# Catalog test tools. Included by the top-level Makefile (`include infra/catalog.mk`).
#
#   make catalog-venv        DuckDB, pinned in infra/catalog-requirements.txt, installed into
#                            .venv-catalog/ (rebuilt when the file changes); tests/e2e/catalog.rs
#                            runs tests/catalog/query.py with it over a vault's catalog objects

CATALOG_VENV   ?= .venv-catalog
CATALOG_REQS   := infra/catalog-requirements.txt
CATALOG_PYTHON ?= python3

.PHONY: catalog-venv

$(CATALOG_VENV)/.installed: $(CATALOG_REQS)
	rm -rf $(CATALOG_VENV)
	$(CATALOG_PYTHON) -m venv $(CATALOG_VENV)
	$(CATALOG_VENV)/bin/pip install --quiet --disable-pip-version-check -r $(CATALOG_REQS)
	touch $@

catalog-venv: $(CATALOG_VENV)/.installed
