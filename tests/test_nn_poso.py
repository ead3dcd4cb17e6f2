"""POSO's layers: gates, POSO(MLP), target MHA in every Table 7 setting, MMoE / POSO(MMoE)."""

from __future__ import annotations

import pytest
import torch

from thawrec.errors import ConfigError
from thawrec.nn.attention import SETTINGS, TargetAttention, masked_attention
from thawrec.nn.gating import PersonalizedGate, PosoMLP
from thawrec.nn.moe import MMoE


def neutral(gate: PersonalizedGate) -> None:
    """Make a gate output exactly C * sigmoid(0) = 1 for every input."""
    last = gate.net[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)


def test_gate_range_and_shape():
    torch.manual_seed(0)
    g = PersonalizedGate(5, 7, scale=2.0)(torch.randn(64, 5) * 10)
    assert g.shape == (64, 7) and (g > 0).all() and (g < 2).all()


def test_poso_mlp_with_neutral_gates_is_a_plain_relu_mlp():
    torch.manual_seed(0)
    m = PosoMLP(6, [8, 4], pc_dim=3)
    for g in m.gates:
        neutral(g)
    x, pc = torch.randn(10, 6), torch.randn(10, 3)
    plain = torch.relu(m.layers[1](torch.relu(m.layers[0](x))))
    assert torch.allclose(m(x, pc), plain, atol=1e-6)
    # and a non-neutral gate changes the output per user group
    torch.nn.init.normal_(m.gates[0].net[-1].weight)
    assert not torch.allclose(m(x, pc), plain)


@pytest.mark.parametrize("mode", SETTINGS)
def test_target_attention_settings_shapes_padding_and_empty_history(mode):
    torch.manual_seed(0)
    att = TargetAttention(12, 8, heads=2, head_dim=4, personalization=mode, n_personal=3,
                          pc_dim=0 if mode == "none" else 5)
    q, seq, pc = torch.randn(6, 12), torch.randn(6, 7, 8), torch.randn(6, 5)
    mask = torch.ones(6, 7, dtype=torch.bool)
    mask[:, 5:] = False
    mask[0] = False  # a brand-new user with no history
    out = att(q, seq, mask, pc)
    assert out.shape == (6, 8) and torch.isfinite(out).all()
    assert torch.all(out[0] == 0)
    seq2 = seq.clone()
    seq2[:, 5:] = 100.0  # padded positions must not matter
    assert torch.allclose(att(q, seq2, mask, pc), out, atol=1e-6)


@pytest.mark.parametrize("value_mix_scale, combine", [("c_over_n", "mean"), ("c", "sum")])
def test_gated_k_with_neutral_gates_equals_mha_over_the_mixed_values(value_mix_scale, combine):
    """A neutral gate (C * sigmoid(0) = 1) averages the N value sets under the default C/N mix
    (the base model's scale, Eq. 6) and sums them under the old C mix."""
    torch.manual_seed(0)
    att = TargetAttention(12, 8, heads=2, head_dim=4, personalization="gated_k", n_personal=3, pc_dim=5,
                          value_mix_scale=value_mix_scale)
    neutral(att.gate_k)
    neutral(att.gate_v_mix)
    q, seq, pc = torch.randn(4, 12), torch.randn(4, 6, 8), torch.randn(4, 5)
    mask = torch.ones(4, 6, dtype=torch.bool)
    plain = TargetAttention(12, 8, heads=2, head_dim=4)
    with torch.no_grad():
        plain.wq.weight.copy_(att.wq.weight)
        plain.wk.weight.copy_(att.wk.weight)
        sets = att.wv.weight.view(3, 8, 8)
        plain.wv.weight.copy_(sets.mean(0) if combine == "mean" else sets.sum(0))
    assert torch.allclose(att(q, seq, mask, pc), plain(q, seq, mask), atol=1e-5)


def test_masked_attention_matches_softmax_reference():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 4), torch.randn(3, 2, 5, 4), torch.randn(3, 2, 5, 4)
    mask = torch.ones(3, 5, dtype=torch.bool)
    w = torch.softmax(torch.einsum("bhd,bhld->bhl", q, k) / 2.0, dim=-1)
    assert torch.allclose(masked_attention(q, k, v, mask), torch.einsum("bhl,bhld->bhd", w, v), atol=1e-6)


def test_personalized_mha_needs_a_code():
    with pytest.raises(ConfigError, match="personalization code"):
        TargetAttention(4, 4, personalization="gated_k")
    with pytest.raises(ConfigError, match="unknown MHA"):
        TargetAttention(4, 4, personalization="nope")


def test_poso_mmoe_with_neutral_gate_equals_mmoe():
    torch.manual_seed(0)
    poso = MMoE(10, 2, n_experts=3, expert_hidden=[8], pc_dim=4)
    neutral(poso.poso_gate)
    plain = MMoE(10, 2, n_experts=3, expert_hidden=[8])
    plain.load_state_dict({k: v for k, v in poso.state_dict().items() if not k.startswith("poso_gate")})
    x, pc = torch.randn(5, 10), torch.randn(5, 4)
    for a, b in zip(poso(x, pc), plain(x)):
        assert a.shape == (5, 8) and torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("mode", SETTINGS)
def test_pooled_values_equal_projecting_every_position(mode):
    """The V-after-pooling rewrite is exact: compare with the textbook per-position computation."""
    torch.manual_seed(1)
    att = TargetAttention(12, 8, heads=2, head_dim=4, personalization=mode, n_personal=3,
                          pc_dim=0 if mode == "none" else 5)
    q_in, seq, pc = torch.randn(5, 12), torch.randn(5, 6, 8), torch.randn(5, 5)
    mask = torch.rand(5, 6) > 0.3
    nq, nk = att.wq.out_features // 8, att.wk.out_features // 8
    q, k, v = att._heads(att.wq(q_in), nq), att._heads(att.wk(seq), nk), att._heads(att.wv(seq), att.n)
    if mode in ("gated_k", "gated_kv"):
        k = k * att._heads(att.gate_k(pc), 1)[:, :, :, None, :]
    if mode == "gated_kv":
        v = v * att._heads(att.gate_v(pc), 1)[:, :, :, None, :]
    outs = torch.stack([masked_attention(q[min(i, nq - 1)], k[min(i, nk - 1)], v[i], mask) for i in range(att.n)])
    if att.n == 1:
        ref = outs[0]
    else:  # weights (C / N) sigmoid(.) = g(pc) / N (value_mix_scale "c_over_n", the default)
        ref = torch.einsum("bn,nbhe->bhe", att.gate_v_mix(pc) / att.n, outs)
    assert torch.allclose(att(q_in, seq, mask, pc), ref.reshape(5, -1), atol=1e-5)
