"""Artifact stores' files: one Backend protocol behind a lazy registry (local, any
fsspec filesystem, S3), the root fence, retries and request limits."""
