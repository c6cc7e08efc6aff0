.PHONY: install test unit integration demo stubs clean-lab bench bench-annotate dashboards chart-docs pictures lock

VENV := .venv
PY := $(VENV)/bin/python

install:
	bash scripts/install.sh

test: install
	$(PY) -m pytest -q tests

unit: install
	$(PY) -m pytest -q tests/unit

integration: install
	$(PY) -m pytest -q tests/integration

demo: install
	$(VENV)/bin/podbw demo

stubs: install
	$(PY) -m agent.cri.generate

bench: install
	$(PY) bench/shaping.py

# kubectl annotate -> limit in the kernel through the API source, 100 pods, 100 changes (issue 13).
bench-annotate: install
	$(PY) bench/annotate_latency.py

clean-lab:
	-$(VENV)/bin/podbw lab down --all

# The Grafana JSON from its grafanalib sources, then real copies of it and of the alert rules
# in the chart (a packaged chart cannot follow symlinks).
dashboards: install
	$(VENV)/bin/podbw dashboards
	$(PY) scripts/chart_files.py

# helm/podbw/README.md's table of values and values.schema.json's descriptions, from the
# comments in values.yaml.
chart-docs: install
	$(PY) scripts/chart_docs.py

pictures: install
	$(PY) bench/pictures.py --output docs/img/

# requirements.lock, the image's dependencies (runtime set + the `top` extra) with hashes, from
# pyproject.toml; existing pins are kept unless pyproject needs others (tests/unit/test_lock.py).
lock: install
	$(VENV)/bin/uv pip compile pyproject.toml --extra top --generate-hashes --python-version 3.11 \
		--python-platform linux -o requirements.lock
