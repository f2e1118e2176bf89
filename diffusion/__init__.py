"""diffusion: a property-conditioned latent diffusion sampler on ``diffusers`` with C2FG guidance.

Not implemented yet: this package holds no model and samples nothing. It exists so the layering
contracts cover it from the start (it may import ``workbench.chem``, never another engine).
"""
