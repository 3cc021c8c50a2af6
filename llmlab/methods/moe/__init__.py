"""Mixture of experts on an encoder's feed-forward projections: vanilla MoE and MEO (merging experts into one)."""
