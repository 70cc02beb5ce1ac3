"""Developer tools outside the runtime package: the tiny test-model generator (tiny_models.py) and
the demo model's training and evaluation (demo/). The web UI never imports them."""
