"""Input and output: pickle-free bundles, the saved formats of an index and a model, and faiss
conversion (see docs/architecture.rst)."""
