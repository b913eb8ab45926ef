"""Zoobot-compatible galaxy encoders: timm backbone, optional bottleneck, Dirichlet head.

* :mod:`.model`: :class:`GalaxyEncoder` and its :class:`EncoderConfig`;
* :mod:`.dirichlet`: the head, concentrations -> vote fractions, the Dirichlet-multinomial loss;
* :mod:`.loading`: :func:`load_model` for every weight format (demo, hub, raregal, Lightning, timm);
* :mod:`.checkpoint`: raregal's own format (safetensors + JSON).
"""

from raregal.encoder.dirichlet import dirichlet_loss, dirichlet_multinomial_nll, fractions_from_concentrations
from raregal.encoder.loading import load_model, read_state_dict
from raregal.encoder.model import FIRST_CLASS_ARCHS, EncoderConfig, GalaxyEncoder
from raregal.encoder.checkpoint import save_model

__all__ = [
    "EncoderConfig", "FIRST_CLASS_ARCHS", "GalaxyEncoder", "dirichlet_loss", "dirichlet_multinomial_nll",
    "fractions_from_concentrations", "load_model", "read_state_dict", "save_model",
]
