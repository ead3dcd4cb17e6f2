"""UIE (Liu et al., KDD 2024) on PLE: the registered model's config contract, its loss terms, each
enhancement's input and ablation switch, UCSE on the packed real behaviours against the dense
form over every slot, the on_batch_end updates (Eq. 1 on sampled rows only,
Eq. 3 by hand), the stopped gradients between the aux towers and the main model, checkpoint /
exact resume of every buffer, two gloo ranks that end with the same state, and a short run that
learns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from thawrec.config import TrainConfig
from thawrec.data.preprocess import FeatureConfig, FeaturePipeline
from thawrec.data.reader import BatchReader
from thawrec.data.schema import FeatureMap
from thawrec.data.splits import temporal_split
from thawrec.data.synthetic import SynthConfig, generate
from thawrec.errors import ConfigError
from thawrec.eval.metrics import auc
from thawrec.models.rankers.ple import PLERanker
from thawrec.models.uie import UIERanker, _distinct
from thawrec.nn.attention import masked_softmax
from thawrec.registry import build_model, names
from thawrec.train.checkpoint import load_checkpoint
from thawrec.train.fit import score_model, train_model
from thawrec.train.trainer import Trainer

SMALL = {"embedding_dim": 8, "expert_hidden": [16], "tower_hidden": [8], "aux": {"hidden": [16], "dim": 8},
         "memory": {"n_user": 16, "n_item": 16, "n_tail": 16, "generalization": [8]}}
ALL = {**SMALL, "tie": True}
WIDTHS = {"upe": 8, "ucbe": 8, "ucse": 8, "tie_profile": 8, "tie_behaviour": 8}
STATE = {  # the buffers / parameters each switch owns
    "upe": ["personal.weight", "upe_layer.0.weight"],
    "ucbe": ["ucbe_vectors"],
    "ucse": ["item_memory.centroids", "item_memory.hits"],
    "tie": ["tail_memory.centroids", "tie_vectors", "item_exposures", "item_personal.weight"],
}


@pytest.fixture(scope="module")
def world():
    ds, _ = generate(SynthConfig(n_users=400, n_items=200, n_interactions=16000, seed=3))
    split = temporal_split(ds.interactions, valid_frac=0.15, test_frac=0.1)
    pipe = FeaturePipeline(FeatureConfig(sequences={"hist_items": ["item_id", 12]})).fit(ds, split.train)
    return pipe.feature_map, pipe.transform(ds, split.train), pipe.transform(ds, split.valid)


def _batch(cols, n=256, start=0):
    return {k: torch.from_numpy(np.ascontiguousarray(v[start:start + n])) for k, v in cols.items()}


def _model(fm, cfg=None, seed=0, spread=False) -> UIERanker:
    """A small UIE model; ``spread``: embeddings redrawn with std 1, so that user / item vectors
    differ between rows as they do after some training (at init they are the towers' biases,
    nearly one vector for every row, and Eq. 3's filter would zero almost every centroid)."""
    torch.manual_seed(seed)
    m = UIERanker(fm, {**ALL, **(cfg or {})})
    if spread:
        with torch.no_grad():
            for t in m.embedding.tables.values():
                t.weight[1:].normal_()
    return m


# --------------------------------------------------------------------------------------------- contract
def test_registered_and_config_contract(world):
    fm = world[0]
    assert "uie" in names("ranker")
    m = build_model("uie", fm, SMALL)
    assert isinstance(m, UIERanker) and isinstance(m, PLERanker)
    bad = [({"upee": True}, "upee"), ({"memory": {"n_usr": 3}}, "n_usr"), ({"sampling": {"rate": 0.3}}, "rate"),
           ({"aux": {"dims": 3}}, "dims"), ({"ucse": "yes"}, "switch"),
           ({"memory": {"k2": 3, "eta": 0.4}}, "k2 \\* eta"), ({"memory": {"n_user": 2, "k1": 3}}, "cannot exceed"),
           ({"tasks": ["label", "w"], "regression_tasks": ["w"], "label_task": "w"}, "binary task"),
           ({"sequence_fields": ["hist_nope"]}, "sequence"), ({"sampling": {"active_type": "nope"}}, "active_type"),
           ({"sampling": {"user_rate": 1.5}}, "rate"), ({"aux": {"user_fields": ["hist_items"]}}, "user_fields"),
           ({"tail_threshold": -1}, "tail_threshold"), ({"memory": {"init": "kmeans"}}, "memory.init"),
           ({"memory": {"reseed_after": 0}}, "reseed_after"), ({"memory": {"reseed_after": 2.5}}, "reseed_after")]
    for cfg, match in bad:
        with pytest.raises(ConfigError, match=match):
            UIERanker(fm, {**SMALL, **cfg})


def test_ucse_needs_a_consumption_sequence(world):
    fm = FeatureMap([f for f in world[0].features if f.kind != "sequence"])
    with pytest.raises(ConfigError, match="consumption sequence"):
        UIERanker(fm, SMALL)
    assert "ucse" not in UIERanker(fm, {**SMALL, "ucse": False}).plan.widths


def test_forward_loss_terms_and_input_widths(world):
    fm, train, _ = world
    m = _model(fm)
    b = _batch(train)
    out = m(b)
    assert {k: tuple(v.shape) for k, v in out["enhancements"].items()} == {k: (256, w) for k, w in WIDTHS.items()}
    assert m.extra_input_dim() == sum(WIDTHS.values())
    assert m.ple.levels[0].task_gates[0].in_features == m.input_dim + sum(WIDTHS.values())
    assert out["user_vec"].shape == out["item_vec"].shape == (256, 8)
    cons = out["consumption"]  # packed: the real behaviours, each distinct one looked up once
    assert cons.mask.dtype == torch.bool and cons.mask.shape[0] == 256 and cons.mask.shape[1] <= 12
    assert cons.vectors.shape == (int(cons.mask.sum()), 8) and len(cons.unique) < len(cons.vectors)
    terms = m.compute_loss(b, out)
    assert set(terms) == {"bce_label", "aux_bce"} and m.aux_loss_terms == ("aux_bce",)
    logit = (out["user_vec"] * out["item_vec"]).sum(-1) + m.aux.bias
    assert torch.allclose(terms["aux_bce"], torch.nn.functional.binary_cross_entropy_with_logits(logit, b["label"]))
    p = m.predict(b)["label"]
    assert p.shape == (256,) and bool(((p > 0) & (p < 1)).all())


@pytest.mark.parametrize("off", ["upe", "ucbe", "ucse", "tie"])
def test_ablation_switch_removes_its_input_and_state(world, off):
    fm, train, _ = world
    full, m = _model(fm), _model(fm, {off: False})
    gone = [k for k in WIDTHS if k.startswith(off)]
    out = m(_batch(train, 64))
    assert set(out["enhancements"]) == set(WIDTHS) - set(gone)
    assert m.extra_input_dim() == full.extra_input_dim() - sum(WIDTHS[k] for k in gone)
    keys = set(m.state_dict())
    assert all(k in set(full.state_dict()) for k in STATE[off])
    assert not any(k in keys for k in STATE[off])


def test_all_switches_off_is_plain_ple(world):
    fm, train, _ = world
    m = _model(fm, {"upe": False, "ucbe": False, "ucse": False, "tie": False})
    ple = PLERanker(fm, {k: v for k, v in SMALL.items() if k not in ("aux", "memory")})
    assert m.aux is None and m.aux_loss_terms == () and m.extra_input_dim() == 0
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in ple.state_dict().items()}
    b = _batch(train, 64)
    out = m(b)
    assert out["enhancements"] == {} and set(m.compute_loss(b, out)) == {"bce_label"}
    m.on_batch_end(b, out)  # nothing to update, and no error
    assert m.last_update == {}


def test_each_enhancement_changes_the_output(world):
    """Perturbing a component's state moves its own input and the prediction, and no other input."""
    fm, train, _ = world
    m = _model(fm).eval()
    b = _batch(train, 128)
    users, items = b["user_id"], b["item_id"]
    perturb = {
        "upe": lambda: m.user_memory.centroids.copy_(torch.randn_like(m.user_memory.centroids)),
        "ucbe": lambda: m.ucbe_vectors.index_fill_(0, users, 0.5),
        "ucse": lambda: m.item_memory.centroids.copy_(torch.randn_like(m.item_memory.centroids)),
        "tie_profile": lambda: m.tail_memory.centroids.copy_(torch.randn_like(m.tail_memory.centroids)),
        "tie_behaviour": lambda: m.tie_vectors.index_fill_(0, items, 0.5),
    }
    for name, change in perturb.items():
        with torch.no_grad():
            before = m(b)
            change()
            after = m(b)
        for k in WIDTHS:
            same = torch.equal(before["enhancements"][k], after["enhancements"][k])
            assert same == (k != name), (name, k)
        assert not torch.allclose(before["logits"]["label"], after["logits"]["label"]), name


def test_ucse_is_eq4_over_the_nearest_centroids_of_real_behaviours(world):
    fm, train, _ = world
    m = _model(fm, {"max_seq_len": 5}, spread=True).eval()
    b = _batch(train, 256)
    with torch.no_grad():
        out = m(b)
    seq, mask = m.consumption_vectors(b)
    first5 = b["hist_items"][:, :5] > 0  # the 5 most recent, cut after the batch's longest history
    width = int(first5.sum(1).max())
    assert seq.shape == (256, width, 8) and torch.equal(mask, first5[:, :width]) and not first5[:, width:].any()
    assert torch.equal(seq[mask], out["consumption"].vectors)
    cents = m.item_memory.centroids
    empty = 0
    for r in range(256):
        real = mask[r].nonzero().flatten()
        got = out["enhancements"]["ucse"][r]
        if not len(real):  # no history: nothing to attend to
            assert not got.any()
            empty += 1
            continue
        theta = cents[(seq[r, real] @ cents.t()).argmax(-1)]  # each behaviour -> its most similar centroid
        target = m.embedding("item_id", b["item_id"][r:r + 1])[0]
        w = torch.softmax(theta @ target, 0)  # Eq. 4, real behaviours only
        assert torch.allclose(got, (w[:, None] * theta).sum(0), atol=1e-6), r
    full = mask.sum(1) == mask.shape[1]
    assert 0 < empty < 256 and bool(full.any()) and not bool(full.all())  # rows with and without padding


def _dense_ucse(m: UIERanker, b: dict, target: torch.Tensor) -> torch.Tensor:
    """UCSE as first written: every one of the ``max_seq_len`` positions, padding included,
    replaced by its most similar centroid, Eq. 4 as dense einsums over ``[B, L]``."""
    L = m.cfg["max_seq_len"]
    seqs = [m.embedding.sequence(n, b[n]) for n in m.plan.seq_fields]
    seq = torch.cat([s.emb[:, :L] for s in seqs], dim=-1).detach()
    mask = seqs[0].mask[:, :L]
    cents = m.item_memory.centroids
    theta = cents[(seq @ cents.t()).argmax(-1)]
    w = masked_softmax(torch.einsum("bld,bd->bl", theta, target), mask)
    return torch.einsum("bl,bld->bd", w, theta)


def test_ucse_on_the_real_behaviours_equals_the_dense_form_over_every_position(world):
    """The packed, deduplicated, trimmed UCSE gives the dense form's vector, logits and gradient
    (float tolerance) on a batch with padding; extra padding columns and ID-less overrides give
    the same."""
    fm, train, _ = world
    m = _model(fm, spread=True).eval()  # max_seq_len 100: the dense form runs over all 12 slots
    b = _batch(train, 256)
    real = b["hist_items"] > 0
    assert bool(real.any()) and bool((~real).any()) and bool((~real.any(1)).any())  # padding, empty rows
    with torch.no_grad():
        out = m(b)
        ref = _dense_ucse(m, b, m.target_vector(b))
        assert torch.allclose(out["enhancements"]["ucse"], ref, rtol=1e-5, atol=1e-6)
        feats = {**out["enhancements"], "ucse": ref}
        logits = m.decide(m.represent(b), torch.cat(list(feats.values()), dim=1))
    for task, v in logits.items():
        assert torch.allclose(out["logits"][task], v, rtol=1e-5, atol=1e-6), task
    # the gradient reaching the target item's vector
    target = m.target_vector(b).detach().requires_grad_(True)
    probe = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0))
    (g_packed,) = torch.autograd.grad((m.ucse_vector(m.consumption(b), target) * probe).sum(), target)
    (g_dense,) = torch.autograd.grad((_dense_ucse(m, b, target) * probe).sum(), target)
    assert g_packed.abs().sum() > 0 and torch.allclose(g_packed, g_dense, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        # 30 more padding columns: cut before anything is looked up
        wide = {**b, "hist_items": torch.cat([b["hist_items"], torch.zeros(256, 30, dtype=torch.long)], dim=1)}
        assert torch.equal(m(wide)["enhancements"]["ucse"], out["enhancements"]["ucse"])
        # the sequence given embedded (no IDs): no deduplication, the same vector
        given = m(b, {"hist_items": m.embedding.sequence("hist_items", b["hist_items"])})
        assert torch.allclose(given["enhancements"]["ucse"], out["enhancements"]["ucse"], rtol=1e-5, atol=1e-6)
        assert len(given["consumption"].unique) == int(real.sum()) > len(out["consumption"].unique)


def test_distinct_behaviours_by_packed_key_or_by_rows():
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 5, (300,), generator=g), torch.randint(0, 3, (300,), generator=g)]
    tuples = torch.stack(ids, dim=1)
    for vocab in ([5, 3], [2 ** 40, 2 ** 40]):  # one int64 key / unique over rows (the key would overflow)
        first, inverse = _distinct(ids, vocab)
        assert torch.equal(tuples[first][inverse], tuples)  # each position's tuple
        assert len(first) == len({tuple(t) for t in tuples.tolist()})
        for k, f in enumerate(first.tolist()):  # the first occurrence
            assert int(inverse[f]) == k and not bool((inverse[:f] == k).any())


# ------------------------------------------------------------------------------------- on_batch_end
def test_on_batch_end_updates_memories_only_from_sampled_rows(world):
    fm, train, _ = world
    m = _model(fm, spread=True)
    b = _batch(train, 512)
    out = m(b)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.on_batch_end(b, out)
    rec, after = m.last_update, m.state_dict()

    for mem, key, sampled in (("user_memory", "user_memory", rec["user_sampled"]),
                              ("tail_memory", "tail_memory", rec["tail_sampled"])):
        assigned = rec[key]
        assert torch.equal(assigned >= 0, sampled)  # only sampled rows are assigned
        changed = (before[f"{mem}.centroids"] != after[f"{mem}.centroids"]).any(1).nonzero().flatten()
        assert torch.equal(changed, assigned[assigned >= 0].unique())
        assert int((after[f"{mem}.hits"] - before[f"{mem}.hits"]).sum()) == int(sampled.sum())
    share = float(rec["user_sampled"].float().mean())
    assert 0.15 < share < 0.6, share  # about 30%, balanced over active types
    assert 0.15 < float(rec["tail_sampled"].float().mean()) < 0.45

    # item memory: every real behaviour of the sampled rows, nothing else
    used = rec["item_sampled"].unsqueeze(1) & out["consumption"].mask
    assert torch.equal(rec["item_memory"] >= 0, used)
    assert int((after["item_memory.hits"] - before["item_memory.hits"]).sum()) == int(used.sum()) > 0
    assert 0.03 < float(rec["item_sampled"].float().mean()) < 0.25  # about 10%

    # UCBE: only the users with a positive row moved (from zero: those with a kept centroid);
    # a user with only negatives stays zero
    pos = b["label"] > 0.5
    movers = b["user_id"][pos].unique()
    moved = (after["ucbe_vectors"] != 0).any(1).nonzero().flatten()
    assert torch.equal(rec["ucbe_users"], movers)
    assert set(moved.tolist()) <= set(movers.tolist()) and len(moved) > len(movers) // 2
    negative_only = set(b["user_id"][~pos].tolist()) - set(movers.tolist())
    assert negative_only and all(not after["ucbe_vectors"][u].any() for u in negative_only)
    # TIE: the positive rows' items moved; every row counted as an exposure
    assert torch.equal(rec["tie_items"], b["item_id"][pos].unique())
    tie_moved = set((after["tie_vectors"] != 0).any(1).nonzero().flatten().tolist())
    assert tie_moved <= set(rec["tie_items"].tolist()) and len(tie_moved) > len(rec["tie_items"]) // 2
    assert torch.equal(after["item_exposures"], torch.bincount(b["item_id"], minlength=len(after["item_exposures"])))


def test_sampling_rates_by_active_type(world):
    fm, train, _ = world
    b = _batch(train, 512)
    m = _model(fm, {"sampling": {"user_rate": 0.0, "item_rate": 1.0, "balance": False}})
    assert not m.sample_rows(b, "user_rate").any() and m.sample_rows(b, "item_rate").all()
    # a rate per active type (the avc bucket): only the types with rate 1 are drawn
    rates = [0.0] * fm["avc"].vocab_size
    rates[5] = 1.0
    m = _model(fm, {"sampling": {"user_rate": rates}})
    assert torch.equal(m.sample_rows(b, "user_rate"), b["avc"] == 5)
    # balanced: every active type present gets about the same number of rows
    m = _model(fm, {"sampling": {"user_rate": 0.3, "balance": True}})
    torch.manual_seed(0)
    counts = torch.stack([torch.bincount(b["avc"][m.sample_rows(b, "user_rate")], minlength=fm["avc"].vocab_size)
                          for _ in range(200)]).float().mean(0)
    present = torch.bincount(b["avc"], minlength=fm["avc"].vocab_size)
    target = 0.3 * 512 / int((present > 0).sum())
    for t in present.nonzero().flatten().tolist():
        expect = min(target, float(present[t]))  # a rare type is taken whole
        assert abs(float(counts[t]) - expect) < 0.15 * expect + 1.0, (t, float(counts[t]), expect)


def test_eq3_on_a_hand_computed_example(world):
    fm = world[0]
    m = _model(fm, {"aux": {"dim": 2, "hidden": [4]}, "memory": {"n_user": 3, "k2": 2, "eta": 0.1, "k1": 2},
                    "sampling": {"user_rate": 0.0}, "ucse": False, "tie": False})
    m.user_memory.centroids.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))

    def step(users, labels, user_vecs, item_vecs):
        batch = {"user_id": torch.tensor(users), "label": torch.tensor(labels), "avc": torch.ones(len(users)).long()}
        return m.update_state(batch, {"user_vec": torch.tensor(user_vecs), "item_vec": torch.tensor(item_vecs)})

    # item [1, .5]: top-2 centroids mu0 (1.0), mu1 (0.5); the user's profile [-.2, 1] is negative with mu0,
    # which becomes the zero vector: p <- p - eta * ((p - 0) + (p - mu1)) = [0, 0.1] from p = 0
    rec = step([5, 7, 1], [1.0, 0.0, 1.0], [[-0.2, 1.0]] * 3, [[1.0, 0.5]] * 3)
    assert torch.allclose(m.ucbe_vectors[5], torch.tensor([0.0, 0.1]))
    assert not m.ucbe_vectors[7].any() and not m.ucbe_vectors[1].any()  # a negative row; an unknown user
    assert rec["ucbe_users"].tolist() == [5]
    assert torch.equal(m.user_memory.hits, torch.zeros(3, dtype=torch.long))  # rate 0: Eq. 1 not applied
    # one more row from p = [0.3, -0.2], both centroids kept (profile [1, 1]): the literal gradient step
    m.ucbe_vectors[5] = torch.tensor([0.3, -0.2])
    p = m.ucbe_vectors[5].clone()
    step([5], [1.0], [[1.0, 1.0]], [[1.0, 0.5]])
    mu = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert torch.allclose(m.ucbe_vectors[5], p - 0.1 * (p - mu).sum(0))
    # two rows of one user in one batch: two steps towards the mean of their targets, any row order
    p = m.ucbe_vectors[5].clone()
    step([5, 5], [1.0, 1.0], [[1.0, 1.0], [-0.2, 1.0]], [[1.0, 0.5], [1.0, 0.5]])
    m_bar = (mu.mean(0) + torch.tensor([0.0, 0.5])) / 2
    keep = (1 - 2 * 0.1) ** 2
    assert torch.allclose(m.ucbe_vectors[5], keep * p + (1 - keep) * m_bar)


# ----------------------------------------------------------------------------------------- gradients
def test_aux_model_and_main_model_exchange_no_gradient(world):
    fm, train, _ = world
    m = _model(fm, {"sparse_embeddings": False})
    b = _batch(train, 128)
    main_params = [p for n, p in m.named_parameters() if not n.startswith("aux.")]
    aux_params = list(m.aux.parameters())

    m.zero_grad(set_to_none=True)
    out = m(b)
    m.compute_loss(b, out)["aux_bce"].backward()
    assert all(p.grad is None for p in main_params)  # no embedding (or anything of PLE) gets a gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in aux_params)

    m.zero_grad(set_to_none=True)
    out = m(b)
    m.compute_loss(b, out)["bce_label"].backward()
    assert all(p.grad is None for p in aux_params)  # the main loss does not train the aux towers
    assert m.embedding.tables["user_id"].weight.grad is not None
    assert m.personal.weight.grad is not None and m.upe_layer[0].weight.grad is not None


# -------------------------------------------------------------------------------- checkpoint, resume
def test_state_dict_round_trip(world):
    fm, train, _ = world
    m = _model(fm)
    for s in range(3):
        b = _batch(train, 256, start=256 * s)
        m.on_batch_end(b, m(b))
    other = _model(fm, seed=1)
    assert not torch.equal(other.user_memory.centroids, m.user_memory.centroids)
    other.load_state_dict(m.state_dict())
    for k, v in m.state_dict().items():
        assert torch.equal(other.state_dict()[k], v), k
    b = _batch(train, 64, start=2000)
    m.eval(), other.eval()
    assert torch.equal(m(b)["logits"]["label"], other(b)["logits"]["label"])


def _fit(fm, cols, run_dir, epochs, resume=False, cfg=None):
    model = _model(fm, cfg)
    reader = BatchReader(cols, batch_size=512, shuffle=True, seed=0, rank=0, world_size=1)
    cfg = TrainConfig(epochs=epochs, lr=3e-3, progress=False, device="cpu", patience=5)
    Trainer(cfg, run_dir).fit(model, reader, lambda mdl: {"auc": 0.5}, resume=resume)
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


@pytest.mark.parametrize("memory", [{}, {"init": "data", "reseed_after": 2}], ids=["paper", "data_reseed"])
def test_training_updates_state_and_resume_is_exact(world, tmp_path, memory):
    fm, train, _ = world
    cfg = {"memory": {**SMALL["memory"], **memory}}
    cols = {k: v[:3000] for k, v in train.items()}
    straight = _fit(fm, cols, tmp_path / "a", epochs=2, cfg=cfg)
    fresh = _model(fm, cfg).state_dict()
    for k in ("user_memory.centroids", "item_memory.centroids", "tail_memory.centroids"):
        assert not torch.equal(straight[k], fresh[k]), k
    assert int(straight["item_exposures"].sum()) == 2 * 3000
    mems = ("user_memory", "item_memory", "tail_memory")
    extra = {f"{mem}.{b}" for mem in mems for b in ("filled", "idle", "reseeds")}
    if memory:
        assert extra <= set(straight) and all(int(straight[f"{mem}.filled"]) == 16 for mem in mems)
        assert sum(int(straight[f"{mem}.reseeds"]) for mem in mems) > 0
    else:
        assert not extra & set(straight)  # the paper's memories carry no extra state
    _fit(fm, cols, tmp_path / "b", epochs=1, cfg=cfg)
    resumed = _fit(fm, cols, tmp_path / "b", epochs=2, resume=True, cfg=cfg)
    for k, v in straight.items():
        assert torch.equal(resumed[k], v), k


def test_tail_threshold_gives_tie_features_to_tail_items_only(world):
    fm, train, _ = world
    m = _model(fm, {"tail_threshold": 10}).eval()
    b = _batch(train, 128)
    head = b["item_id"][0]
    m.item_exposures[head] = 10
    m.tie_vectors.fill_(0.5)
    with torch.no_grad():
        feats = m(b)["enhancements"]
    is_head = b["item_id"] == head
    assert torch.equal(m.is_tail(b["item_id"]), ~is_head)
    for k in ("tie_profile", "tie_behaviour"):
        assert not feats[k][is_head].any() and feats[k][~is_head].abs().sum(1).gt(0).all()


# ------------------------------------------------------------------------------------- distributed
def _rank_batches(cols):
    b = _batch(cols, 96, start=512)
    return b, [{k: v[r::2] for k, v in b.items()} for r in range(2)]


_RATE_ONE = {"sampling": {"user_rate": 1.0, "item_rate": 1.0, "tail_rate": 1.0, "balance": False}}


def _worker(rank, world, tmp, fm, cols):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/init", rank=rank, world_size=world)
    m = _model(fm, _RATE_ONE, spread=True)
    part = _rank_batches(cols)[1][rank]  # each rank sees its own rows
    m.update_state(part, m(part))
    torch.save(m.state_dict(), f"{tmp}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_gloo_ranks_hold_the_same_state(world, tmp_path):
    fm, train, _ = world
    cols = {k: v[:1024] for k, v in train.items()}
    mp.spawn(_worker, args=(2, str(tmp_path), fm, cols), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    single = _model(fm, _RATE_ONE, spread=True)
    full, _ = _rank_batches(cols)
    single.update_state(full, single(full))
    for k, v in single.state_dict().items():
        assert torch.equal(a[k], b[k]), k
        assert torch.allclose(a[k].float(), v.float(), atol=1e-6), k
    assert int(a["item_exposures"].sum()) == 96 and bool(a["ucbe_vectors"].any())


# ------------------------------------------------------------------------------------------ learning
def test_uie_learns(world):
    fm, train, valid = world
    torch.manual_seed(0)
    m = build_model("uie", fm, ALL)
    cfg = TrainConfig(epochs=3, batch_size=256, lr=5e-3, progress=False, device="cpu", patience=3)
    fit = train_model(m, train, valid, cfg, None).fit
    score = auc(valid["label"], score_model(m, valid, 4096, "cpu")["label"])
    assert score > 0.6, fit.history  # chance is 0.5
    aux = [h["train_aux_bce"] for h in fit.history]
    assert aux[-1] < aux[0], aux  # the aux towers learn their own objective
    assert int(m.user_memory.hits.sum()) > 0 and bool(m.ucbe_vectors.any())
