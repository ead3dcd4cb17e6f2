"""Two-tower retrievers under the retrieval contract (:mod:`thawrec.models.retrieval`)."""
