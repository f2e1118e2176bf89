"""reasoning: a compact molecular reasoning language model (design spec -> reasoning steps -> SMILES).

Not implemented yet: this package holds no model and proposes nothing. It exists so the layering
contracts cover it from the start (it may import ``workbench.chem``, never another engine).
"""
