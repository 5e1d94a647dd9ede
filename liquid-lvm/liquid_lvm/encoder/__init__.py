"""Isotropic Gaussian retrieval encoder (issue 11)."""
