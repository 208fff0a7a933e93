# Two commands for a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc 2>/dev/null || echo 2)
export PIP_DISABLE_PIP_VERSION_CHECK = 1
# llama.cpp built for this CPU (GGML_NATIVE, the default) segfaults in decode on the bundled Gemma GGUF
# on machines with AMX/AVX512-FP16 (seen 2026-12-02, llama-cpp-python 0.3.36; a NATIVE=OFF build answers).
# pip's wheel cache ignores CMAKE_ARGS, so llama-cpp-python is built with --no-cache-dir.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
LLAMA_CPP := llama-cpp-python>=0.3.16,<0.4

.PHONY: demo test install install-dev bench lint clean

$(VENV)/.stamp-install: pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c 'import llama_cpp' 2>/dev/null || $(PY) -m pip install -q --no-cache-dir '$(LLAMA_CPP)'
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-install
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.stamp-install
install-dev: $(VENV)/.stamp-dev

# Answer one question offline with the bundled local model under policies/default.yaml.
demo: install
	$(VENV)/bin/router ask "What is the capital of France?" --policy policies/default.yaml --set offline=true

test: install-dev
	$(PY) -m pytest -q -p no:cacheprovider

bench: install-dev
	$(PY) bench/local_throughput.py

lint: install-dev
	$(VENV)/bin/ruff check router tests bench

clean:
	rm -rf $(VENV) build *.egg-info
