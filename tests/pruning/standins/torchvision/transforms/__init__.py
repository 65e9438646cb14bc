from torchvision.transforms.v2.functional import InterpolationMode  # noqa: F401
