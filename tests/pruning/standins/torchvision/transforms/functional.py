from torchvision.transforms.v2.functional import InterpolationMode, __getattr__  # noqa: F401
