"""sgm (Stability generative models, SDXL) module paths that A1111 extensions import.

SDXL models are built from these classes; each subclasses the ldm class of the same name, so a
class-level patch on `sgm.modules.attention.CrossAttention` reaches SDXL models only, one on
`ldm.modules.attention.CrossAttention` reaches every model that does not override it. Nothing
here imports `modules`.
"""
