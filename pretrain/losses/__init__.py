"""Losses: pure functions of tensors, one per module; no state, no queue updates.

Every loss is computed in float32 (`pretrain.precision.float32_loss`: autocast off, half-precision inputs cast),
whatever `run.precision` the encoder runs in."""
