"""Speaker verification: embeddings (encoder.py), per-recording analysis (analysis.py), fraud flags (flags.py).

Heavy imports (torch, the model) happen only when an encoder is loaded, never at bot start-up.
"""
