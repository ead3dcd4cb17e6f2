import torch
from torch import nn

from thawrec.eval.complexity import cost_table, count_params


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(100, 10)
        self.fc = nn.Linear(10, 5)
        self.out = nn.Linear(5, 1)

    def forward(self, batch):
        return self.out(torch.relu(self.fc(self.emb(batch["x"]))))


def test_params_and_flops_per_sample_by_hand():
    m = Toy()
    rows = cost_table(m, {"x": torch.arange(32)}, {"fc": "fc", "out": "out", "model": ""})
    by = {r["module"]: r for r in rows}
    assert by["fc"]["params"] == 55 and by["fc"]["flops_per_sample"] == 2 * 10 * 5
    assert by["out"]["params"] == 6 and by["out"]["flops_per_sample"] == 2 * 5
    assert by["model"]["params"] == 61 and by["model"]["embedding_params"] == 1000
    assert by["model"]["flops_per_sample"] == 110
    assert count_params(m, embeddings=True) == 1061


class Towers(nn.Module):
    def __init__(self):
        super().__init__()
        self.towers = nn.ModuleList(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1)) for _ in range(2))

    def forward(self, batch):
        return sum(t(batch["x"]) for t in self.towers)


def test_containers_without_forward_sum_their_children_once():
    rows = cost_table(Towers(), {"x": torch.randn(8, 4)}, {"towers": "towers"})
    assert rows[0]["flops_per_sample"] == 2 * (2 * 4 * 3 + 2 * 3 * 1)
