# Every target works from a fresh clone: the venv's bin/ goes first on PATH,
# because nbgrader runs `alembic` and `jupyter` from PATH.
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
PYTHON ?= python3
export PATH := $(BIN):$(PATH)

.PHONY: setup test test-fast demo accuracy release benchmark clean vendor-katex

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@command -v bwrap >/dev/null 2>&1 || { test "$$(id -u)" = 0 && apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; } \
		|| echo "warning: bubblewrap (bwrap) is missing; grading needs it: apt-get install bubblewrap"
	@{ test -x /usr/bin/chromium && command -v psql >/dev/null 2>&1; } \
		|| { test "$$(id -u)" = 0 && apt-get update -qq && apt-get install -y -qq chromium postgresql >/dev/null; } \
		|| echo "warning: chromium or postgresql is missing; their tests are skipped: apt-get install chromium postgresql"
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	# An editable install skips data files: enable the TAs' grading page in this venv's Jupyter.
	install -D -m 644 jupyter-config/jupyter_server_config.d/coursekit.json $(VENV)/etc/jupyter/jupyter_server_config.d/coursekit.json
	touch $@

test: setup
	$(BIN)/python -m pytest

# The fast tier for quick edits (~2 min): the judge, the wire format, the kernel's message checks,
# import, integrity, CSVs, HTML sanitizing, feedback serialization and the CLI; no kernel, no browser
# (the feedback exporter's comparison with nbconvert autogrades a class: it stays in `make test`).
FAST_TESTS := tests/test_checks.py tests/test_html_safety.py tests/test_importing.py tests/test_integrity.py \
	tests/test_exporting.py tests/test_notebooks.py tests/test_readme.py tests/test_cli.py tests/test_demo.py tests/test_layout.py \
	tests/test_check_cell_metadata.py tests/test_fast_gradebook.py tests/test_feedback_exporter.py tests/test_forms.py tests/test_given.py \
	tests/test_kernel_client.py tests/test_channel_guard.py tests/test_gradebook_lookups.py
test-fast: setup
	$(BIN)/python -m pytest $(FAST_TESTS) \
		--deselect tests/test_feedback_exporter.py::test_kit_exporter_writes_nbconverts_pages_made_offline

# Also in the fast tier: similar answers between teams (the synthetic class, pages and CSV, without kernels).
FAST_TESTS += tests/test_similarity.py

demo: setup
	$(BIN)/coursekit demo

accuracy: setup
	$(BIN)/coursekit accuracy

release: setup
	$(BIN)/nbgrader generate_assignment ex2 --force

benchmark: setup
	$(BIN)/python benchmarks/bench_grading.py --scheduler-comparison
	$(BIN)/python benchmarks/bench_similarity.py

clean:
	rm -rf .demo results autograded submitted feedback gradebook.db

# KaTeX (formulas without a network) is committed from its npm package; this fetches the version
# coursekit/reports/math.py names again, after changing it there.
KATEX_VERSION = $(shell sed -n 's/^KATEX_VERSION = "\(.*\)"/\1/p' coursekit/reports/math.py)
KATEX_FOLDER = coursekit/reports/static/katex
vendor-katex:
	rm -rf .katex $(KATEX_FOLDER) && mkdir -p .katex $(KATEX_FOLDER)/contrib $(KATEX_FOLDER)/fonts
	cd .katex && npm pack --silent katex@$(KATEX_VERSION) && tar xzf katex-$(KATEX_VERSION).tgz
	cp .katex/package/LICENSE .katex/package/dist/katex.min.js .katex/package/dist/katex.min.css $(KATEX_FOLDER)/
	cp .katex/package/dist/contrib/auto-render.min.js $(KATEX_FOLDER)/contrib/
	cp .katex/package/dist/fonts/*.woff2 $(KATEX_FOLDER)/fonts/
	rm -rf .katex
