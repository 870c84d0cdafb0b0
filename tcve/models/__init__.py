"""Networks of the pipeline, loading the checkpoint formats the field publishes.

Public entry points (kept stable: other stages and external checks call them):

- ``load_generator(path_or_state)`` -> ``Generator`` (rosinality ``{'g_ema': ...}`` files, NADA files, NVlabs ``.pkl``)
- ``load_encoder(path_or_state)`` -> e4e / pSp / ReStyle encoder (``{'state_dict', 'opts', 'latent_avg'}`` files)
- ``load_mapper(path_or_state)`` -> StyleCLIP ``LevelsMapper``

All return eval-mode float32 modules whose configuration is read from the file itself.
"""

from .stylegan2 import Generator
from .generator_files import load_generator
from .encoders import load_encoder
from .mapper import LevelsMapper, load_mapper

__all__ = ["Generator", "LevelsMapper", "load_encoder", "load_generator", "load_mapper"]
