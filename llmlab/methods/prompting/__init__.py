"""Prompt strategies for translation with chat models (ChatGPT4MT: TSP, DSP, F-DSP, few-shot, CoT)."""
