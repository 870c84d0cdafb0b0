"""tcve: temporally consistent semantic editing of face videos with a pretrained StyleGAN2.

Implements "Temporally Consistent Semantic Video Editing" (Xu, AlBahar, Huang, ECCV 2022).
"""

__version__ = "0.1.0"
