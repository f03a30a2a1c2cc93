# Hobotnica's own build. A new machine needs two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG := $(firstword $(wildcard config/hobotnica.toml) config/hobotnica.example.toml)

.PHONY: install run test lint typecheck unit check-config bench bench-peer bench-floors deploy clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: install
	$(BIN)/hobotnica serve --config $(CONFIG)

check-config: install
	$(BIN)/hobotnica check-config --config $(CONFIG)

lint: install
	$(BIN)/ruff check runner tests bench
	$(BIN)/ruff format --check runner tests bench

typecheck: install
	$(BIN)/mypy runner

unit: install
	$(BIN)/pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

bench: install
	$(BIN)/python bench/bench.py --json bench/results.json

# The same driver against adnanh/webhook running a shell script (Debian's webhook package,
# installed when missing), side by side with the ratios: S1 and S3.
bench-peer: install
	$(BIN)/python bench/bench.py --peer webhook --scenario s1 --scenario s3 --json bench/results-peer.json

# What the driver can show at all here: servers that do (almost) nothing, webhook among them.
bench-floors: install
	$(BIN)/python bench/floors.py --json bench/results-floors.json

# Hobotnica deploys itself: when it builds its own repository's deploy branch, `make deploy`
# asks systemd to install exactly this commit and switch to it (systemd/upgrade.sh). It waits,
# so the deploy's status says whether the upgrade worked.
deploy:
	@test -n "$(HOBOTNICA_SHA)" || { echo "make deploy runs inside a Hobotnica build (HOBOTNICA_SHA)"; exit 2; }
	systemctl start "hobotnica-upgrade@$(HOBOTNICA_SHA).service"
