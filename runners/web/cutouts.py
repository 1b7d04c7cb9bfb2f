"""The image cutouts an alert carries (science, template, difference), as PNG images.

The packet is read back from the ledger's packet store by its digest and decoded as at
ingestion. ZTF keeps each cutout as gzipped FITS in ``{"stampData": ...}``, Rubin as
plain FITS bytes. The image is scaled between its 0.5th and 99.5th percentiles with an
arcsine stretch, north up as FITS stores it (origin at the bottom).
"""

from __future__ import annotations

import gzip
import io
import warnings
from collections.abc import Mapping
from typing import Any

from skyledger.units.packets.decode import Decoded, decode

__all__ = ["KINDS", "cutout_fits", "png_of", "record_of"]

KINDS = {"science": "cutoutScience", "template": "cutoutTemplate", "difference": "cutoutDifference"}
"""The cutouts by the names the pages use, with the packet field of each."""


def record_of(packet: bytes) -> Mapping[str, Any] | None:
    """Return the decoded alert record of a stored packet (None if it does not decode)."""
    for found in decode(packet, "packet store"):
        if isinstance(found, Decoded) and isinstance(found.record, Mapping):
            return found.record
    return None


def cutout_fits(record: Mapping[str, Any], kind: str) -> bytes | None:
    """Return one cutout's FITS bytes (ungzipped), or None if the alert has none."""
    value = record.get(KINDS[kind])
    if isinstance(value, Mapping):
        value = value.get("stampData")
    if not isinstance(value, bytes | bytearray) or not value:
        return None
    data = bytes(value)
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def png_of(fits: bytes) -> bytes:
    """Return a FITS image (its first HDU with 2-d data) as a grey PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from astropy.io import fits as pyfits
    from matplotlib import pyplot as plt

    with warnings.catch_warnings():  # ZTF's cutouts bend the standard (a SIMPLE card's format)
        warnings.simplefilter("ignore", pyfits.verify.VerifyWarning)
        with pyfits.open(io.BytesIO(fits), memmap=False) as hdus:
            image = next((h.data for h in hdus if h.data is not None and h.data.ndim == 2), None)
            if image is None:
                raise ValueError("no 2-d image in the cutout")
            pixels = np.asarray(image, dtype=float)
    finite = np.isfinite(pixels)
    if not finite.any():
        raise ValueError("the cutout holds no finite pixel")
    low, high = np.percentile(pixels[finite], [0.5, 99.5])
    scaled = np.clip((np.where(finite, pixels, low) - low) / ((high - low) or 1.0), 0, 1)
    stretched = np.arcsinh(10 * scaled) / np.arcsinh(10)
    out = io.BytesIO()
    plt.imsave(out, stretched, cmap="gray", origin="lower", format="png")
    return out.getvalue()
