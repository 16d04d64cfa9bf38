"""Losses: pure functions of tensors, one per module; no state, no queue updates."""
