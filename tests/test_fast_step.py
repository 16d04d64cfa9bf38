"""The faster training step computes what the plain NCHW step computed.

AudioNTT2020 keeps its convolution weights channels-last (so every activation is) and max-pools
before the ReLU. Both are layout and order changes of the same function: here they are checked
against a literal NCHW encoder (Conv -> BN -> ReLU -> MaxPool in the written order, as BYOL-A's
AudioNTT2020 runs them) on the same weights: outputs, every gradient, BatchNorm running
statistics, and a whole SLICER step (loss, gradients, teacher keys) agree to float rounding.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from hear_slicer.encoder import AudioNTT2020, EncoderConfig
from pretrain.config import load_config
from pretrain.objectives import objective_class


def _nchw_forward_blocks(self: AudioNTT2020, x: torch.Tensor):
    """The reference: NCHW activations, each block's modules in their written order."""
    h = x.unsqueeze(1)  # (B, 1, F, T)
    outs = []
    for block in self.blocks:
        h = block(h)  # Conv2d -> BatchNorm2d -> ReLU -> MaxPool2d
        outs.append(h)
    b, c, f, t = h.shape
    return self.fc(h.permute(0, 3, 1, 2).reshape(b, t, c * f)), outs


def _as_nchw_reference(enc: AudioNTT2020) -> AudioNTT2020:
    """A copy of `enc` with contiguous (NCHW) weights and the reference forward."""
    ref = copy.deepcopy(enc)
    for p in ref.blocks.parameters():
        p.data = p.data.contiguous()
    ref.forward_blocks = _nchw_forward_blocks.__get__(ref)
    return ref


def test_encoder_weights_and_activations_are_channels_last():
    enc = AudioNTT2020(EncoderConfig())
    assert all(block[0].weight.is_contiguous(memory_format=torch.channels_last) for block in enc.blocks)
    _, outs = enc.forward_blocks(torch.randn(2, 64, 40))
    assert all(o.is_contiguous(memory_format=torch.channels_last) for o in outs)
    # a state dict loaded into a fresh encoder keeps the fast layout
    fresh = AudioNTT2020(EncoderConfig())
    fresh.load_state_dict({k: v.contiguous() for k, v in enc.state_dict().items()})
    assert fresh.blocks[1][0].weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("frames", [96, 95])  # even and odd lengths (pooling floors)
def test_training_forward_and_gradients_equal_the_nchw_reference(frames):
    torch.manual_seed(0)
    enc = AudioNTT2020(EncoderConfig(dropout=0.0)).train()
    ref = _as_nchw_reference(enc)
    x = torch.randn(6, 64, frames)
    out, blocks = enc.forward_blocks(x)
    ref_out, ref_blocks = ref.forward_blocks(x)
    assert torch.allclose(out, ref_out, atol=1e-5, rtol=1e-4)
    for b, rb in zip(blocks, ref_blocks):
        assert b.shape == rb.shape and torch.allclose(b, rb, atol=1e-5, rtol=1e-4)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    (ref_out * w).sum().backward()
    for (name, p), rp in zip(enc.named_parameters(), ref.parameters()):
        assert torch.allclose(p.grad, rp.grad, atol=1e-4, rtol=1e-3), name
    for (name, buf), rbuf in zip(enc.named_buffers(), ref.buffers()):
        assert torch.allclose(buf.float(), rbuf.float(), atol=1e-6, rtol=1e-5), name  # BN running statistics


def test_a_whole_slicer_step_equals_the_nchw_reference_step():
    cfg = load_config("pretrain/configs/demo.yaml", ["objective.params.split_bn_groups=2"])
    torch.manual_seed(0)
    fast = objective_class("slicer")(cfg.encoder, cfg.objective.params).train()
    ref = copy.deepcopy(fast)
    ref.encoder = _as_nchw_reference(ref.encoder)
    ref.teacher_encoder = _as_nchw_reference(ref.teacher_encoder)
    a, b = torch.randn(8, 64, 95), torch.randn(8, 64, 95)
    outs = []
    for model in (fast, ref):
        torch.manual_seed(1)  # the same dropout masks and split-BN permutations on both sides
        out = model(a, b)
        out.loss.backward()
        outs.append(out)
    assert torch.allclose(outs[0].loss, outs[1].loss, atol=1e-5, rtol=1e-5)
    for k in outs[0].metrics:
        assert torch.allclose(outs[0].metrics[k], outs[1].metrics[k], atol=1e-5, rtol=1e-4), k
    assert torch.allclose(fast._pending_keys, ref._pending_keys, atol=1e-5)
    grads = dict(ref.named_parameters())
    for name, p in fast.named_parameters():
        if p.requires_grad:
            assert torch.allclose(p.grad, grads[name].grad, atol=1e-4, rtol=1e-3), name


def test_pooling_before_relu_is_the_same_function_with_the_same_gradient():
    """relu(maxpool(h)) == maxpool(relu(h)); the gradient reaches the same input element."""
    torch.manual_seed(0)
    h1 = torch.randn(3, 4, 10, 11, requires_grad=True)
    h2 = h1.detach().clone().requires_grad_()
    y1 = torch.relu(nn.functional.max_pool2d(h1, 2))
    y2 = nn.functional.max_pool2d(torch.relu(h2), 2)
    assert torch.equal(y1, y2)
    w = torch.randn_like(y1)
    (y1 * w).sum().backward()
    (y2 * w).sum().backward()
    assert torch.equal(h1.grad, h2.grad)
