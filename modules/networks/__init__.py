"""Extra networks: LoRA / LyCORIS, textual-inversion embeddings and hypernetworks, A1111-compatible.

- catalogue.py: what is on disk (names, aliases, hashes, previews, user metadata) for UI and API
- lora_formats.py: network files -> per-layer weight updates (kohya, PEFT, LyCORIS, full, IA3, DoRA)
- keymap.py: network layer names -> modules of our diffusers / transformers models
- lora_patch.py: reversible per-job weight patches (or forward hooks, "functional" mode)
- embeddings.py, image_embedding.py: textual-inversion files and the lookup the conditioner uses
- hypernetworks.py: A1111 hypernetwork files, applied as hooks on the UNet's attention k/v inputs
- activation.py: `NetworkActivator`, the service the generation engine calls per batch
- infotext.py: "Lora hashes" / "TI hashes" text and resolving pasted tags by hash
- options.py: the settings (A1111 Lora extension keys); testing.py: test-file writers

Nothing here runs at import time; every service takes its dependencies as arguments.
"""
