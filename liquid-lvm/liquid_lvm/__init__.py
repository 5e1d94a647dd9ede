"""Latent vector models (next-chunk-vector prediction, isotropic encoder). Not built yet: no open issue asks for it."""
