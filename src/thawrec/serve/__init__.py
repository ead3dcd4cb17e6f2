"""Online serving (application layer). The candidate generation it serves (U2G2I) is library code
in :mod:`thawrec.retrieval`, shared with the offline replay."""
