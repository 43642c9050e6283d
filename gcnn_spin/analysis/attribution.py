"""Attribution maps: which pixels drive a model's call, for a few test galaxies and their mirror images.

Method (the study's appendix used SHAP; here captum's Integrated Gradients, deterministic and cheap): for an image
``x`` and a class ``c``, the path integral of the gradient of logit ``c`` from a black image to ``x``, times
``x``, summed over the colour bands, with ``N_STEPS`` = 8 steps: a map ``(S, S)`` whose pixels sum to
``logit_c(x) - logit_c(0)`` up to the step error. Positive pixels push towards ``c``.

Each galaxy is shown with the map for the class the model predicts for it (``c``) and, beside, its mirror image with
the map for the mirrored class ``P(c)`` (CW <-> ACW, Other stays). A model that is exactly chirality-equivariant,
``logits(mirror(x)) = P logits(x)``, has ``map(mirror(x), P(c)) = mirror(map(x, c))`` to float rounding, because the
black baseline is its own mirror: the report's ``mirror_error`` column measures the departure, relative to the
largest attribution.
"""

from __future__ import annotations

import numpy as np
import torch

from ..conventions import MIRROR_PERMUTATION

N_STEPS = 8
N_GALAXIES = 2


def mirror(images: torch.Tensor) -> torch.Tensor:
    """Mirror ``(B, C, S, S)`` images about the vertical axis (the two-pass predict's mirror)."""
    return images.flip(-1)


def attribution_maps(module: torch.nn.Module, images: torch.Tensor, targets: torch.Tensor,
                     n_steps: int = N_STEPS) -> np.ndarray:
    """Integrated-gradients maps ``(B, S, S)`` of logit ``targets[i]`` for images ``(B, 3, S, S)`` (eval mode)."""
    from captum.attr import IntegratedGradients

    module.eval()
    images = images.detach().clone().requires_grad_(True)
    attributions = IntegratedGradients(module).attribute(images, baselines=torch.zeros_like(images),
                                                         target=targets, n_steps=n_steps)
    return attributions.detach().sum(dim=1).cpu().numpy()


def mirrored_pairs(module: torch.nn.Module, images: torch.Tensor, n_steps: int = N_STEPS) -> dict[str, np.ndarray]:
    """Maps of galaxies for their predicted class and of their mirrors for the mirrored class.

    Returns ``images``/``mirrored`` ``(B, S, S, 3)`` for display, ``targets`` ``(B,)``, ``maps``/``mirror_maps``
    ``(B, S, S)`` and ``mirror_error`` ``(B,)``: ``max|mirror_map - mirror(map)| / max|map|``.
    """
    with torch.no_grad():
        targets = module.eval()(images).argmax(dim=1)
    swapped = torch.as_tensor(MIRROR_PERMUTATION, device=targets.device)[targets]
    flipped = mirror(images)
    maps = attribution_maps(module, images, targets, n_steps)
    mirror_maps = attribution_maps(module, flipped, swapped, n_steps)
    scale = np.abs(maps).reshape(len(maps), -1).max(axis=1)
    error = np.abs(mirror_maps - maps[..., ::-1]).reshape(len(maps), -1).max(axis=1) / np.maximum(scale, 1e-30)
    display = lambda x: x.detach().permute(0, 2, 3, 1).clamp(0, 1).cpu().numpy()  # noqa: E731
    return {"images": display(images), "mirrored": display(flipped), "targets": targets.cpu().numpy(),
            "maps": maps, "mirror_maps": mirror_maps, "mirror_error": error}


def select_galaxies(rows, n: int = N_GALAXIES, seed: int = 0) -> np.ndarray:
    """Store rows of ``n`` usable test galaxies, spirals (hard class CW or ACW) first, drawn with ``seed``."""
    from ..conventions import ACW, CW, hard_class

    ok = rows["ok"].to_numpy(dtype=bool) if "ok" in rows else np.ones(len(rows), dtype=bool)
    labels = hard_class(rows[["p_cw", "p_acw", "p_other"]].to_numpy()) if "p_cw" in rows else np.full(len(rows), -1)
    order = np.random.default_rng(seed).permutation(len(rows))
    spirals = [i for i in order if ok[i] and labels[i] in (CW, ACW)]
    others = [i for i in order if ok[i] and labels[i] not in (CW, ACW)]
    return np.asarray((spirals + others)[:n], dtype=np.int64)
