"""Quantization of a fine-tuned encoder: fake-quantized linears (methods/quant/fake_quant.py), PTQ, QAT with real
or random data, and ZSAQ (zero-shot sharpness-aware quantization)."""
