"""Standard re-ID image transforms: resize 256x128, flip, pad + crop, ImageNet normalise, random erasing."""

from __future__ import annotations

from collections.abc import Sequence

from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_transforms(
    train: bool,
    height: int = 256,
    width: int = 128,
    flip_p: float = 0.5,
    pad: int = 10,
    erasing_p: float = 0.5,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> T.Compose:
    """PIL RGB image -> normalised float tensor [3, height, width]; augmentations only when ``train``.

    Random draws use torch's RNG, so seeding torch (and DataLoader workers) makes them reproducible.
    The resize is bilinear, the protocol the shared OSNet embeddings and zero-shot reference were made with.
    """
    resize = T.Resize((height, width), interpolation=T.InterpolationMode.BILINEAR, antialias=True)
    normalize = T.Normalize(mean=list(mean), std=list(std))
    if not train:
        return T.Compose([resize, T.ToTensor(), normalize])
    steps: list[object] = [resize]
    if flip_p > 0:
        steps.append(T.RandomHorizontalFlip(p=flip_p))
    if pad > 0:
        steps += [T.Pad(pad), T.RandomCrop((height, width))]
    steps += [T.ToTensor(), normalize]
    if erasing_p > 0:
        # value 0 after normalisation = the mean colour, as in the random-erasing paper's re-ID setting.
        steps.append(T.RandomErasing(p=erasing_p, value=0))
    return T.Compose(steps)
