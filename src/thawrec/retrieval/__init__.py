"""Retrieval machinery: U2G2I candidate generation (:mod:`.u2g2i`) and exact vector search with
k-means (:mod:`.index`). The two-tower model contract is a model and lives with the models
(:mod:`thawrec.models.retrieval`); this package imports no model, so the layers run one way."""
