"""The search engine: lookup tables, scan kernels, the running top-k, exhaustive and inverted-list
indexes, filters, re-ranking and the tuning values (see docs/architecture.rst)."""
