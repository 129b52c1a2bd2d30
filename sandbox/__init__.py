"""The offline sandbox: the unchanged bot against the local Bot API stand-in (`harness`), scripted people
walking every flow (`demo`), and synthetic Russian speech for them (`demo_audio`). Tests and the demo use it;
the running service never imports it (tests/test_layers.py)."""
