"""Kubernetes source: list+watch of the DR objects on each cluster, as raw JSON dicts."""
