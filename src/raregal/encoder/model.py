"""A Zoobot-compatible galaxy encoder: timm backbone, optional linear bottleneck, Dirichlet head.

``GalaxyEncoder`` holds three parts, named so that Zoobot checkpoints map onto them directly:

* ``encoder``: any timm architecture created with ``num_classes=0`` (pooled features whose width
  is read from the model, :func:`backbone_width`, never assumed);
* ``bottleneck``: an optional ``nn.Linear(encoder width, bottleneck)`` whose output is the
  representation (the paper squeezes it to 128 dimensions);
* ``head``: Zoobot's Dirichlet head (:func:`raregal.encoder.dirichlet.dirichlet_head`) on the
  representation, one output per answer of the model's Galaxy Zoo tree (``EncoderConfig.schema``,
  a name of :data:`raregal.inputs.gz_trees.SCHEMAS`: 34 for GZ DESI, 98 for GZ DECaLS all campaigns), or
  ``None`` for an encoder without one (e.g. a Hugging Face hub encoder).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from raregal.inputs import gz_trees as schema
from raregal.encoder.dirichlet import dirichlet_head, fractions_from_concentrations

#: The timm architectures the paper uses (any other timm name works too).
FIRST_CLASS_ARCHS = ("efficientnet_b0", "maxvit_tiny_rw_224")


@dataclass
class EncoderConfig:
    """Everything needed to rebuild a :class:`GalaxyEncoder` before loading its weights.

    ``arch``: timm model name; ``bottleneck``: representation width or None (no bottleneck);
    ``input_size``: square input side in pixels; ``channels``: 3 (RGB) or 1; ``dropout``: head
    dropout probability; ``head``: whether the Dirichlet head exists; ``timm_kwargs``: extra
    arguments to ``timm.create_model`` (e.g. ``drop_path_rate``); ``schema``: the Galaxy Zoo tree
    the head predicts (:func:`raregal.inputs.gz_trees.get` name; its answer count is the head's width).
    """

    arch: str = "efficientnet_b0"
    bottleneck: int | None = 128
    input_size: int = 224
    channels: int = 3
    dropout: float = 0.2
    head: bool = True
    timm_kwargs: dict = field(default_factory=dict)
    schema: str = schema.DEFAULT.name

    def __post_init__(self):
        self.schema = schema.get(self.schema).name  # an alias (gz-desi, dr8) becomes the schema's own name

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderConfig":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def create_backbone(arch: str, channels: int = 3, pretrained: bool = False, input_size: int | None = None,
                    **timm_kwargs) -> nn.Module:
    """``timm.create_model(arch, num_classes=0, in_chans=channels)``: a pooled feature extractor.

    Architectures built for one input size (MaxViT, ViT) are built for ``input_size`` when it
    differs from timm's default. Raises InputError naming ``arch`` when timm does not know it.
    """
    import timm

    from raregal.errors import InputError

    if not arch.startswith("hf_hub:") and not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('_')[0]}*")[:8]
        raise InputError(f"unknown timm architecture {arch!r}" + (f"; similar: {', '.join(close)}" if close else ""))
    kwargs = dict(pretrained=pretrained, num_classes=0, in_chans=channels, **timm_kwargs)
    if input_size and not arch.startswith("hf_hub:") and "img_size" not in kwargs:
        default = getattr(timm.get_pretrained_cfg(arch), "input_size", None)
        if default and int(default[-1]) != int(input_size):
            try:
                return timm.create_model(arch, img_size=int(input_size), **kwargs)
            except TypeError as err:  # convolutional nets take any size and have no img_size argument
                if "img_size" not in str(err):
                    raise
    return timm.create_model(arch, **kwargs)


def backbone_width(backbone: nn.Module) -> int:
    """Width of a timm backbone's pooled output (``num_classes=0``), read from the model.

    timm reports it as ``head_hidden_size`` where a head layer sits after pooling (MobileNetV3,
    LCNet) and as ``num_features`` otherwise (EfficientNet, MaxViT, ConvNeXt, ViT).
    """
    width = getattr(backbone, "head_hidden_size", None) or getattr(backbone, "num_features", None)
    if not width:
        raise ValueError(f"{type(backbone).__name__} reports neither head_hidden_size nor num_features")
    return int(width)


class GalaxyEncoder(nn.Module):
    """timm encoder -> optional bottleneck -> Dirichlet head over the tree ``config.schema``.

    ``embed(x)``: images (B, C, H, W) in 0..1 -> representation (B, D), D = ``representation_dim``
    (the bottleneck width if any, else the encoder's pooled width).
    ``forward(x)``: images -> Dirichlet concentrations (B, A) in (1, 101), A the tree's answers.
    ``embed_and_predict(x)``: both, with one pass through the encoder; fractions (B, A), in the
    order of ``self.schema.fractions``.
    """

    def __init__(self, config: EncoderConfig, backbone: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.encoder = backbone if backbone is not None else create_backbone(
            config.arch, config.channels, input_size=config.input_size, **config.timm_kwargs)
        self.encoder_dim = backbone_width(self.encoder)
        if config.bottleneck:
            self.bottleneck = nn.Linear(self.encoder_dim, int(config.bottleneck))
            self.representation_dim = int(config.bottleneck)
        else:
            self.bottleneck = None
            self.representation_dim = self.encoder_dim
        self.schema = schema.get(config.schema)
        self.head = (dirichlet_head(self.representation_dim, len(self.schema.answers), config.dropout)
                     if config.head else None)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Representation (B, D) of images (B, C, H, W)."""
        z = self.encoder(x)
        return self.bottleneck(z) if self.bottleneck is not None else z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dirichlet concentrations (B, A) of images (B, C, H, W)."""
        if self.head is None:
            raise RuntimeError("this encoder has no Dirichlet head (it predicts no vote fractions)")
        return self.head(self.embed(x))

    def embed_and_predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(representation (B, D), predicted vote fractions (B, A) or None without a head)."""
        z = self.embed(x)
        if self.head is None:
            return z, None
        return z, fractions_from_concentrations(self.head(z), self.schema)
