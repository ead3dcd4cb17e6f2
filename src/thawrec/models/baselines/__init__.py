"""Cold-start baselines from their own papers, each built on a shared base model (MeLU, Meta-Embedding, MWUF)."""
