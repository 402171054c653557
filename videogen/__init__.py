"""videogen: the Sora recipe in JAX/Flax."""
