"""MAIL's building blocks in thawrec.nn: additive attention pooling, residual autoencoders, MMD."""

from __future__ import annotations

import math

import torch

from thawrec.nn.autoencoders import ResidualDecoder, ResidualEncoder
from thawrec.nn.losses import gaussian_mmd
from thawrec.nn.pooling import AdditiveAttentionPooling


def test_additive_pooling_is_a_convex_combination_that_ignores_padding():
    torch.manual_seed(0)
    pool = AdditiveAttentionPooling(8, attn_dim=4)
    x = torch.randn(3, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    w = pool.weights(x, mask)
    torch.testing.assert_close(w.sum(-1), torch.tensor([1.0, 1.0, 0.0]))
    assert (w[0, 3:] == 0).all()
    x2 = x.clone()
    x2[0, 3:] = 100.0  # whatever sits in padded slots changes nothing
    torch.testing.assert_close(pool(x2, mask)[0], pool(x, mask)[0])
    assert (pool(x, mask)[2] == 0).all()  # nothing to pool: zero vector, no NaN
    e = pool.z(torch.tanh(pool.proj(x[1]))).squeeze(-1)  # Eq. 2 by hand
    torch.testing.assert_close(pool(x, mask)[1], (torch.softmax(e, 0)[:, None] * x[1]).sum(0))
    x.requires_grad_(True)
    pool(x, mask).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_residual_encoder_and_decoder_follow_eq_15_16():
    enc, dec = ResidualEncoder(32), ResidualDecoder(512, 32)
    assert (enc.l1.in_features, enc.l1.out_features) == (32, 1024)
    assert (enc.l2.in_features, enc.l2.out_features) == (1024 + 32, 512)  # [z1, h]
    assert (enc.out.in_features, enc.out.out_features) == (512 + 32, 512)  # [z2, h]
    assert (dec.l1.out_features, dec.l2.in_features, dec.out.in_features) == (512, 512 + 512, 1024 + 512)
    enc.eval(), dec.eval()
    h = torch.randn(6, 32)
    p = enc(h)
    assert p.shape == (6, 512) and -p.min() < 0.05 * p.max()  # LeakyReLU output: negatives damped
    assert dec(p).shape == (6, 32) and (dec(p) < 0).any()  # linear output: can reconstruct negatives
    enc.train()
    assert not torch.equal(enc(h), enc(h))  # dropout 0.5 active in training


def test_gaussian_mmd_matches_the_definition_and_separates_shifted_batches():
    torch.manual_seed(0)
    p, q = torch.randn(20, 4), torch.randn(30, 4)

    def k(a, b):
        return math.exp(-float(((a - b) ** 2).sum()) / 2.0)

    naive = (sum(k(a, b) for a in p for b in p) / 400 + sum(k(a, b) for a in q for b in q) / 900
             - 2 * sum(k(a, b) for a in p for b in q) / 600)
    assert abs(float(gaussian_mmd(p, q)) - naive) < 1e-5
    assert float(gaussian_mmd(p, p)) < 1e-6
    big = torch.randn(200, 4)
    assert float(gaussian_mmd(big, big + 2.0)) > 5 * float(gaussian_mmd(big, torch.randn(200, 4)))
    p.requires_grad_(True)
    gaussian_mmd(p, q + 1.0).backward()
    assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
