"""The voice evaluation lab: field simulation and accuracy measurement of the voice checks.

Not part of the running service: bench/, the CLI's `fieldcheck voice eval`, the tests and the sandbox's
demo audio use it; services/, jobs/ and handlers/ never import it (tests/test_layers.py). `fieldsim` turns
clean read speech into one cheap phone in a noisy shop; `field_eval` builds sets from it and scores the real
analysis on them; `evaluation` gives EER on labelled speech; `random_checkpoint` writes an ECAPA checkpoint
with random weights for offline tests and benchmarks.
"""
