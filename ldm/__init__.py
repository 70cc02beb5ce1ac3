"""ldm (CompVis latent diffusion) module paths that A1111 extensions import.

These are our own modules: views over the loaded diffusers models whose leaf modules and
parameters ARE the diffusers ones (shared, never copied). Generation runs through them, so a
replaced `forward` on an instance or a class-level patch of e.g.
`ldm.modules.attention.CrossAttention.forward` takes effect. Nothing here imports `modules`.
"""
