"""POSO's fast path computes the same model as the literal one: per-bucket gate lookup (one pass for
all gates), query gating instead of key gating, and POSO(MMoE)'s mask on the task weights. Also the
C/N rectification of POSO(MHA)'s value mixture."""

from __future__ import annotations

import pytest
import torch

from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.reader import BatchReader
from thawrec.data.splits import time_window_new_users
from thawrec.data.synthetic import SynthConfig, generate
from thawrec.errors import ConfigError
from thawrec.models.poso import BUCKET_PCS, PC_CHOICES, PosoRanker
from thawrec.nn.attention import SETTINGS, TargetAttention, masked_attention
from thawrec.nn.gating import (
    BucketCode,
    PersonalizedGate,
    PosoMLP,
    code_rows,
    evaluate_gates,
)
from thawrec.nn.moe import MMoE

TOL = {"atol": 1e-5, "rtol": 1e-4}


def textbook_attention(att: TargetAttention, query, seq, mask, pc):
    """POSO's Eq. 13 / 14 written out: N sets of per-position Q, K, V, K gated by G^k broadcast
    over L, V gated by G^v, outputs mixed by g(pc) * C / N (or * 1 under value_mix_scale "c")."""
    nq, nk = att.wq.out_features // att.out_dim, att.wk.out_features // att.out_dim
    q, k, v = att._heads(att.wq(query), nq), att._heads(att.wk(seq), nk), att._heads(att.wv(seq), att.n)
    if att.mode in ("gated_k", "gated_kv"):
        k = k * att._heads(att.gate_k.evaluate(pc), 1)[:, :, :, None, :]
    if att.mode == "gated_kv":
        v = v * att._heads(att.gate_v.evaluate(pc), 1)[:, :, :, None, :]
    outs = torch.stack([masked_attention(q[min(i, nq - 1)], k[min(i, nk - 1)], v[i], mask) for i in range(att.n)])
    if att.n == 1:
        return outs[0].reshape(len(query), -1)
    c = att.scale
    factor = c / att.n if att.value_mix_scale == "c_over_n" else c
    weights = factor * torch.sigmoid(att.gate_v_mix.net(pc))
    return torch.einsum("bn,nbhe->bhe", weights, outs).reshape(len(query), -1)


def _inputs(seed=0, b=7, vocab=5):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(vocab, 5, generator=g, requires_grad=True)
    index = torch.randint(0, vocab, (b,), generator=g)
    mask = torch.rand(b, 6, generator=g) > 0.3
    mask[0] = False  # an empty history
    return torch.randn(b, 12, generator=g), torch.randn(b, 6, 8, generator=g), mask, table, index


# ---------------------------------------------------------------------------------------- layers
@pytest.mark.parametrize("value_mix_scale", ["c_over_n", "c"])
@pytest.mark.parametrize("mode", SETTINGS)
def test_attention_fast_and_literal_paths_match_the_textbook(mode, value_mix_scale):
    torch.manual_seed(0)
    kw = {"heads": 2, "head_dim": 4, "personalization": mode, "n_personal": 3,
          "pc_dim": 0 if mode == "none" else 5, "value_mix_scale": value_mix_scale}
    fast, slow = TargetAttention(12, 8, **kw), TargetAttention(12, 8, fast=False, **kw)
    slow.load_state_dict(fast.state_dict())
    for p in fast.parameters():  # non-trivial gates (their last layer is not near zero)
        torch.nn.init.normal_(p, std=0.5)
    slow.load_state_dict(fast.state_dict())
    query, seq, mask, table, index = _inputs()
    pc = table[index]
    ref = textbook_attention(fast, query, seq, mask, pc)
    code = BucketCode(table, index, [m for m in fast.modules() if isinstance(m, PersonalizedGate)])
    for out in (fast(query, seq, mask, pc), fast(query, seq, mask, code), slow(query, seq, mask, pc),
                slow(query, seq, mask, BucketCode(table, index))):
        assert torch.allclose(out, ref, **TOL)


@pytest.mark.parametrize("mode", ["full", "shared_q", "gated_k"])
def test_c_over_n_is_the_old_c_mix_divided_by_n(mode):
    """The mixture is linear in its weights: the C/N output is exactly the C output over N."""
    torch.manual_seed(0)
    kw = {"heads": 2, "head_dim": 4, "personalization": mode, "n_personal": 4, "pc_dim": 5}
    new, old = TargetAttention(12, 8, **kw), TargetAttention(12, 8, value_mix_scale="c", **kw)
    old.load_state_dict(new.state_dict())
    query, seq, mask, table, index = _inputs()
    assert torch.allclose(new(query, seq, mask, table[index]) * 4, old(query, seq, mask, table[index]), **TOL)


def test_neutral_value_gates_average_the_value_sets_at_the_base_scale():
    """With neutral gates (G^k = 1, g = 1) POSO(MHA) is a plain MHA whose W_v is the mean of the N
    value sets: same output scale as the base model (the review measured 1.9x before C/N)."""
    torch.manual_seed(0)
    att = TargetAttention(12, 8, heads=2, head_dim=4, personalization="gated_k", n_personal=4, pc_dim=5)
    for gate in (att.gate_k, att.gate_v_mix):
        torch.nn.init.zeros_(gate.net[-1].weight)
        torch.nn.init.zeros_(gate.net[-1].bias)
    plain = TargetAttention(12, 8, heads=2, head_dim=4)
    with torch.no_grad():
        plain.wq.weight.copy_(att.wq.weight)
        plain.wk.weight.copy_(att.wk.weight)
        plain.wv.weight.copy_(att.wv.weight.view(4, 8, 8).mean(0))
        # every value set equal to the base one: the POSO output equals the base output exactly
        same = TargetAttention(12, 8, heads=2, head_dim=4, personalization="gated_k", n_personal=4, pc_dim=5)
        same.load_state_dict(att.state_dict())
        same.wv.weight.copy_(plain.wv.weight.repeat(4, 1))
    query, seq, mask, table, index = _inputs()
    pc = table[index]
    assert torch.allclose(att.mix_weights(pc), torch.full((7, 4), 0.25))
    assert torch.allclose(att(query, seq, mask, pc), plain(query, seq, mask), **TOL)
    assert torch.allclose(same(query, seq, mask, pc), plain(query, seq, mask), **TOL)


def test_gate_bank_and_bucket_lookup_equal_per_row_gates_with_gradients():
    torch.manual_seed(0)
    gates = [PersonalizedGate(5, o, scale=s) for o, s in ((8, 2.0), (3, 2.0), (16, 1.0), (3, 2.0))]
    _, _, _, table, index = _inputs(b=40, vocab=6)

    def grads(outs):
        loss = sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in outs)
        params = [table, *[p for g in gates for p in g.parameters()]]
        return torch.autograd.grad(loss, params)

    per_row = [g(table[index]) for g in gates]
    ref = grads(per_row)
    ways = {
        "bank": lambda: [g(BucketCode(table, index, gates)) for g in gates],
        "lookup": lambda: [g(BucketCode(table, index)) for g in gates],  # no bank: each gate on first use
        "fused rows": lambda: list(evaluate_gates(gates, table[index]).split([8, 3, 16, 3], dim=1)),
    }
    for way, make in ways.items():
        outs = make()
        assert all(torch.allclose(a, b, **TOL) for a, b in zip(outs, per_row)), way
        assert all(torch.allclose(a, b, **TOL) for a, b in zip(grads(outs), ref)), way
    bank = BucketCode(table, index, gates)
    assert torch.equal(code_rows(bank), table[index]) and code_rows(None) is None
    assert gates[1](bank) is gates[1](bank)  # cached: one evaluation per forward


def test_poso_mlp_and_mmoe_fast_paths_match_literal():
    torch.manual_seed(0)
    _, _, _, table, index = _inputs(b=9, vocab=4)
    x = torch.randn(9, 10)
    mlp = PosoMLP(10, [8, 6], pc_dim=5)
    fast, slow = MMoE(10, 2, n_experts=3, expert_hidden=[8], pc_dim=5), MMoE(10, 2, n_experts=3, expert_hidden=[8],
                                                                            pc_dim=5, fast=False)
    slow.load_state_dict(fast.state_dict())
    code = BucketCode(table, index, [*mlp.gates, fast.poso_gate])
    assert torch.allclose(mlp(x, code), mlp(x, table[index]), **TOL)
    for a, b in zip(fast(x, code), slow(x, table[index])):
        assert torch.allclose(a, b, **TOL)


# ---------------------------------------------------------------------------------------- model
@pytest.fixture(scope="module")
def world():
    ds, _ = generate(SynthConfig(n_users=300, n_items=200, n_interactions=8000, seed=3))
    split = time_window_new_users(ds.interactions, window=0.2)
    pipe = FeaturePipeline(FeatureConfig(sequences={"hist_items": ["item_id", 8], "hist_tags": ["tags", 8]},
                                         item_age_days=[1, 7, 30])).fit(ds, split.train)
    batch = next(iter(BatchReader(pipe.transform(ds, split.test), batch_size=64, shuffle=True, seed=1, rank=0,
                                  world_size=1)))
    assert batch["_is_new"].any() and not batch["_is_new"].all()
    return pipe.feature_map, batch


SMALL = {"embedding_dim": 8, "heads": 2, "head_dim": 4, "expert_hidden": [16], "tower_hidden": [8], "n_personal": 3,
         "tasks": ["label"]}


def _pair(fm, **cfg):
    """The same model twice: fast path and the literal computation, with identical parameters."""
    torch.manual_seed(0)
    fast = PosoRanker(fm, {**SMALL, **cfg})
    for n, p in fast.named_parameters():  # gates far from neutral, so that a wrong gate shows
        if "gate" in n and "task_gates" not in n:
            torch.nn.init.normal_(p, std=0.5)
    slow = PosoRanker(fm, {**SMALL, **cfg, "fast_path": False})
    slow.load_state_dict(fast.state_dict())
    return fast, slow


@pytest.mark.parametrize("pc", PC_CHOICES)
@pytest.mark.parametrize("mha", SETTINGS)
def test_model_fast_path_logits_equal_the_literal_path(world, pc, mha):
    fm, batch = world
    fast, slow = _pair(fm, pc=pc, poso={"mlp": True, "mha": mha, "mmoe": True})
    a, b = fast(batch), slow(batch)
    assert torch.allclose(a["logits"]["label"], b["logits"]["label"], **TOL)
    assert torch.allclose(a["pc"], b["pc"], **TOL)
    x, code = fast.encode(batch)
    assert isinstance(code, BucketCode) == (pc in BUCKET_PCS)
    assert torch.allclose(fast.decide(x, code)["label"], fast.decide(x, code_rows(code))["label"], **TOL)


@pytest.mark.parametrize("pc, mha", [*((pc, "gated_k") for pc in PC_CHOICES), ("avc", "gated_kv"), ("avc", "full")])
def test_model_fast_path_gradients_equal_the_literal_path(world, pc, mha):
    fm, batch = world
    tiny = {k: v[:12] for k, v in batch.items()}
    fast, slow = _pair(fm, pc=pc, poso={"mlp": True, "mha": mha, "mmoe": True}, sparse_embeddings=False)
    for m in (fast, slow):
        sum(m.compute_loss(tiny, m(tiny)).values()).backward()
    grads = dict(slow.named_parameters())
    for n, p in fast.named_parameters():
        q = grads[n]
        assert (p.grad is None) == (q.grad is None), n
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-6, rtol=1e-4), n
    if pc in BUCKET_PCS:  # the gathered gate values backprop into the code's embedding table
        assert fast.pc_embedding.weight.grad.abs().sum() > 0


def test_value_gates_for_fig4_on_both_paths(world):
    fm, _ = world
    fast, slow = _pair(fm, poso={"mha": "gated_k"})
    buckets = torch.arange(1, fast.pc_embedding.num_embeddings)
    att, att_slow = next(iter(fast.attn.values())), next(iter(slow.attn.values()))
    g = att.value_gates(fast.pc_embedding(buckets))
    assert g.shape == (len(buckets), 3) and ((g > 0) & (g < 2)).all()
    assert torch.allclose(att.value_gates(BucketCode(fast.pc_embedding.weight, buckets)), g, **TOL)
    assert torch.allclose(att_slow.value_gates(slow.pc_embedding(buckets)), g, **TOL)


def test_value_mix_scale_is_validated(world):
    with pytest.raises(ConfigError, match="value_mix_scale"):
        TargetAttention(12, 8, personalization="gated_k", pc_dim=5, value_mix_scale="sqrt")
    with pytest.raises(ConfigError, match="value_mix_scale"):
        PosoRanker(world[0], {"value_mix_scale": "sqrt", "poso": {"mha": "gated_k"}})


def test_all_combined_state_dict_is_unchanged_by_the_fast_path(world):
    """Same parameters: the fast path adds no tensors and renames none (checkpoints load both ways)."""
    fm, _ = world
    fast, slow = _pair(fm, poso={"mlp": True, "mha": "gated_k", "mmoe": True})
    assert list(fast.state_dict()) == list(slow.state_dict())
    assert fast.cfg["value_mix_scale"] == "c_over_n" and fast.cfg["fast_path"] is True
