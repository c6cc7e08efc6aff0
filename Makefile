.PHONY: install test unit integration demo stubs clean-lab bench dashboards pictures

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

clean-lab:
	-$(VENV)/bin/podbw lab down --all

dashboards: install
	$(VENV)/bin/podbw dashboards

pictures: install
	$(PY) bench/pictures.py --output docs/img/
