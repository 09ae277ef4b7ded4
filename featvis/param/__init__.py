"""Image parameterizations: ``nn.Module``s whose ``forward()`` returns (B, 3, H, W) in [0, 1]
((B, 4, H, W) with an alpha channel)."""
from .base import ImageParam, fit_images, image_tensor
from .color import COLOR_CORRELATION, decorrelate, from_valid_rgba, to_valid_rgb, to_valid_rgba
from .cppn import CPPN, cppn
from .fourier import LUCID_SHARED, Fourier, fourier, spectrum_scale
from .maco import Maco, maco, natural_spectrum
from .lowres import LowResTensor, Pyramid, lowres, pyramid
from .pixel import Pixel, pixel

__all__ = ["ImageParam", "pixel", "fourier", "cppn", "pyramid", "lowres", "maco", "Maco", "natural_spectrum",
           "Pixel", "Fourier", "CPPN", "Pyramid", "LowResTensor", "spectrum_scale", "LUCID_SHARED",
           "to_valid_rgb", "to_valid_rgba", "from_valid_rgba", "decorrelate", "COLOR_CORRELATION",
           "image_tensor", "fit_images"]
