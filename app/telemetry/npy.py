"""Decode vLLM's `routed_experts`: base64 of a `.npy` file (numpy.save), shape (tokens, layers, top_k).

vLLM writes it with `vllm.utils.serial_utils.numpy2base64` (uint8 up to 256
experts, else uint16; int32 is allowed too). The gateway has no numpy, so this
reads the documented .npy layout itself: magic, version, a header dict
(`descr`, `fortran_order`, `shape`), then the C-order data.
"""

from __future__ import annotations

import ast
import base64
import binascii
import struct
import sys
from array import array
from dataclasses import dataclass

MAGIC = b"\x93NUMPY"
# .npy dtype -> array typecode (unsigned and signed integers of the widths vLLM uses)
TYPECODES = {"u1": "B", "i1": "b", "u2": "H", "i2": "h", "u4": "I", "i4": "i", "i8": "q", "u8": "Q"}


class RoutedExpertsError(ValueError):
    """The payload is not a routed-experts array (the answer is still served; nothing is counted)."""


@dataclass(frozen=True)
class RoutedExperts:
    tokens: int
    layers: int
    top_k: int
    ids: array  # flat, C order: ids[(t * layers + l) * top_k + k]

    def layer_column(self, layer: int, k: int) -> array:
        """The expert chosen in slot k of `layer` for every token."""
        return self.ids[layer * self.top_k + k :: self.layers * self.top_k]


def decode_routed_experts(payload: str) -> RoutedExperts:
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise RoutedExpertsError(f"not base64: {exc}") from None
    if raw[:6] != MAGIC or len(raw) < 10:
        raise RoutedExpertsError("not a .npy payload")
    major = raw[6]
    size_format, start = ("<H", 8) if major == 1 else ("<I", 8)
    width = struct.calcsize(size_format)
    (header_len,) = struct.unpack_from(size_format, raw, start)
    body = start + width
    try:
        header = ast.literal_eval(raw[body : body + header_len].decode("latin1"))
        descr, shape = header["descr"], tuple(header["shape"])
    except (ValueError, SyntaxError, KeyError, TypeError) as exc:
        raise RoutedExpertsError(f"bad .npy header: {exc}") from None
    if header.get("fortran_order") or len(shape) != 3 or descr[1:] not in TYPECODES:
        raise RoutedExpertsError(f"expected a C-order integer array of 3 dimensions, got {descr} {shape}")
    ids = array(TYPECODES[descr[1:]])
    data = raw[body + header_len :]
    count = shape[0] * shape[1] * shape[2]
    if len(data) != count * ids.itemsize:
        raise RoutedExpertsError(f"{len(data)} data bytes for shape {shape}")
    ids.frombytes(data)
    if ids.itemsize > 1 and (descr[0] == ">") != (sys.byteorder == "big"):
        ids.byteswap()
    return RoutedExperts(*shape, ids)
