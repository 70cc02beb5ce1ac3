"""Interrogate: describe an image as a prompt (A1111's "Interrogate CLIP" and "Interrogate
DeepBooru"; POST /sdapi/v1/interrogate). See service.py."""
