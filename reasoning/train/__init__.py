"""Training stages of the reasoning model: (a) :mod:`reasoning.train.sft` on teacher traces."""
