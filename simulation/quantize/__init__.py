"""GAQ: geometric-aware W4A8 quantization of the equivariant potential (see simulation/README.md)."""
