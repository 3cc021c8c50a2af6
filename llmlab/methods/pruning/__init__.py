"""LLM pruning with calibration data: magnitude, Wanda and SparseGPT (locuslab/wanda, IST-DASLab/sparsegpt;
abx393/llm-pruning-calibration-data)."""
