"""Self-supervised training without votes: two augmented views, a projection head, a contrastive loss.

``raregal train --objective contrastive`` (and the contrastive part of ``hybrid``) shows the
encoder two randomly augmented views of each galaxy (:func:`view_transform`), passes each view's
representation (the bottleneck output) through a small :class:`ProjectionHead`, and asks for the
two projections of one galaxy to agree (:func:`contrastive_loss`):

* ``simclr``: NT-Xent / InfoNCE (Chen et al. 2020): each view must pick its partner out of the
  2B - 1 other views of the batch, by cosine similarity at a temperature;
* ``vicreg``: VICReg (Bardes et al. 2022): the two projections close in mean squared distance,
  every projected dimension with a standard deviation of at least 1 over the batch, and the
  dimensions decorrelated. No negatives.

The augmentations only do what a survey does to one galaxy: any rotation and flip, a small shift
and zoom, a PSF-like blur, pixel noise and a modest change of brightness and contrast. Nothing
changes its colour balance (a missing band is a class here) or cuts it (a crop can cut a ring in
half). The projection head is used only in training; the saved encoder ends at the bottleneck.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

#: The contrastive losses ``--contrastive-method`` offers, the default first (see benchmarks/README.md).
METHODS = ("simclr", "vicreg")


def view_transform(size: int, shift: float = 0.06, zoom: tuple[float, float] = (0.9, 1.1),
                   blur_sigma: tuple[float, float] = (0.1, 1.2), blur_prob: float = 0.5,
                   noise_sigma: float = 0.03, noise_prob: float = 0.5, brightness: float = 0.2,
                   contrast: float = 0.2):
    """One random view of a galaxy: callable on (C, H, W) in 0..1, returns (C, ``size``, ``size``).

    Resize to ``size``; reflection-pad by the farthest reach of the rotated, zoomed-out and
    shifted corners (so no empty corner appears); any rotation, a shift of up to ``shift`` of the
    side and a zoom in ``zoom`` in one bilinear affine map; centre-crop back; horizontal and
    vertical flips; with ``blur_prob`` a Gaussian blur of sigma in ``blur_sigma`` pixels (at 64
    px; scaled with ``size``); a brightness and contrast factor within 1 +- ``brightness`` /
    ``contrast``; with ``noise_prob`` Gaussian noise of ``noise_sigma``; clipped to 0..1.
    Random numbers come from torch's global generator (seeded per DataLoader worker).
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import v2 as T

    from raregal.images.dataset import resize

    reach = size / 2 * math.sqrt(2) / zoom[0] + shift * size
    pad = int(math.ceil(reach - size / 2)) + 1
    padded = size + 2 * pad
    scale = size / 64
    sigma = (blur_sigma[0] * scale, blur_sigma[1] * scale)
    kernel = 2 * int(math.ceil(3 * sigma[1])) + 1
    augment = T.Compose([
        T.Pad(pad, padding_mode="reflect"),
        T.RandomAffine(degrees=180.0, translate=(shift * size / padded, shift * size / padded), scale=zoom,
                       interpolation=InterpolationMode.BILINEAR),
        T.CenterCrop(size),
        T.RandomHorizontalFlip(),
        T.RandomVerticalFlip(),
        T.RandomApply([T.GaussianBlur(kernel, sigma=sigma)], p=blur_prob),
        T.ColorJitter(brightness=brightness, contrast=contrast),
        T.RandomApply([T.GaussianNoise(sigma=noise_sigma, clip=True)], p=noise_prob),
    ])

    def transform(image: torch.Tensor) -> torch.Tensor:
        if image.dtype == torch.uint8:
            image = image.float().div_(255.0)
        return augment(resize(image, size))

    return transform


def paired_views(size: int, plain: bool = False, **kwargs):
    """Two independent :func:`view_transform` views stacked: (2, C, H, W); with ``plain``, the
    un-augmented resized image first: (3, C, H, W) (validation of ``hybrid``)."""
    from raregal.images.dataset import resize

    view = view_transform(size, **kwargs)

    def transform(image: torch.Tensor) -> torch.Tensor:
        if image.dtype == torch.uint8:
            image = image.float().div_(255.0)
        views = [view(image), view(image)]
        return torch.stack(([resize(image, size)] if plain else []) + views)

    return transform


class ProjectionHead(nn.Module):
    """MLP from the representation to the space the loss is computed in (training only).

    ``Linear(in, hidden) -> BatchNorm -> ReLU`` repeated ``layers - 1`` times, then ``Linear(hidden, out)``.
    """

    def __init__(self, in_features: int, hidden: int = 512, out: int = 128, layers: int = 2):
        super().__init__()
        blocks: list[nn.Module] = []
        width = in_features
        for _ in range(layers - 1):
            blocks += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            width = hidden
        blocks.append(nn.Linear(width, out))
        self.net = nn.Sequential(*blocks)
        self.shape = {"in": int(in_features), "hidden": int(hidden), "out": int(out), "layers": int(layers)}

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def nt_xent_loss(p1: torch.Tensor, p2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """SimCLR's NT-Xent (InfoNCE) loss of paired projections (B, P): mean over the 2B views of the
    cross-entropy of picking the partner view among the other 2B - 1 by cosine similarity / temperature."""
    z = F.normalize(torch.cat([p1, p2]), dim=1)
    n = len(p1)
    logits = z @ z.T / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(logits, target)


def vicreg_loss(p1: torch.Tensor, p2: torch.Tensor, sim: float = 25.0, var: float = 25.0, cov: float = 1.0
                ) -> torch.Tensor:
    """VICReg's loss of paired projections (B, P): ``sim`` x MSE(p1, p2) + ``var`` x the mean hinge
    of each dimension's standard deviation below 1 + ``cov`` x the squared off-diagonal covariances / P."""
    invariance = F.mse_loss(p1, p2)
    variance, covariance = 0.0, 0.0
    for p in (p1, p2):
        p = p - p.mean(0)
        std = torch.sqrt(p.var(0) + 1e-4)
        variance = variance + F.relu(1.0 - std).mean() / 2
        c = p.T @ p / (len(p) - 1)
        covariance = covariance + (c.pow(2).sum() - c.diagonal().pow(2).sum()) / p.shape[1]
    return sim * invariance + var * variance + cov * covariance


def contrastive_loss(method: str, p1: torch.Tensor, p2: torch.Tensor, temperature: float = 0.2) -> torch.Tensor:
    """The loss of ``method`` (one of :data:`METHODS`) on paired projections (B, P), a scalar."""
    if method == "simclr":
        return nt_xent_loss(p1, p2, temperature)
    if method == "vicreg":
        return vicreg_loss(p1, p2)
    raise ValueError(f"unknown contrastive method {method!r}; known: {', '.join(METHODS)}")


def default_projection(method: str, representation_dim: int) -> dict:
    """Projection head shape for ``method``: SimCLR's 2-layer MLP to 128; VICReg's 3-layer expander
    (wider than the representation, as VICReg's variance and covariance terms want)."""
    if method == "vicreg":
        return {"hidden": 512, "out": 512, "layers": 3}
    return {"hidden": 512, "out": 128, "layers": 2}
