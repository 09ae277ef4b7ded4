"""Image parameterizations: ``nn.Module``s whose ``forward()`` returns (B, 3, H, W) in [0, 1]."""
from .base import ImageParam
from .color import COLOR_CORRELATION, decorrelate, to_valid_rgb
from .fourier import Fourier, fourier, spectrum_scale
from .pixel import Pixel, pixel

__all__ = ["ImageParam", "pixel", "fourier", "Pixel", "Fourier", "spectrum_scale",
           "to_valid_rgb", "decorrelate", "COLOR_CORRELATION"]
