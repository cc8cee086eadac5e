"""Energy model: prices a format's ``cost()`` with 45 nm energies (Horowitz, ISSCC 2014).

Arithmetic (pJ per operation) by operand width; memory access priced per 32 bits by
the size of the array it touches (the smallest cache level the array fits in), scaled
linearly by element bits.
"""

from __future__ import annotations

from compactnn.formats.base import Cost

__all__ = ["ADD_PJ", "MULT_PJ", "MEMORY_PJ_PER_32BIT", "access_pj", "energy_pj", "energy_breakdown"]

ADD_PJ = {32: 0.9, 16: 0.4, 8: 0.2}
MULT_PJ = {32: 3.7, 16: 1.1, 8: 0.6}
# (array size limit in bytes, pJ per 32-bit access); beyond the last limit: DRAM.
MEMORY_PJ_PER_32BIT = ((8 * 1024, 5.0), (32 * 1024, 10.0), (1024 * 1024, 50.0))
DRAM_PJ_PER_32BIT = 1000.0


def access_pj(array_bytes: int, element_bits: int) -> float:
    """Energy of one read or write of an element of ``element_bits`` in an array of
    ``array_bytes``."""
    per32 = DRAM_PJ_PER_32BIT
    for limit, pj in MEMORY_PJ_PER_32BIT:
        if array_bytes <= limit:
            per32 = pj
            break
    return per32 * element_bits / 32.0


def energy_breakdown(cost: Cost) -> dict[str, float]:
    """Energy in pJ split into ``adds``, ``mults`` and one entry per array accessed."""
    if cost.flop_bits not in ADD_PJ:
        raise ValueError(f"no energy entry for {cost.flop_bits}-bit arithmetic")
    out = {
        "adds": cost.adds * ADD_PJ[cost.flop_bits],
        "mults": cost.mults * MULT_PJ[cost.flop_bits],
    }
    for kind in (cost.reads, cost.writes):
        for name, (count, bits, nbytes) in kind.items():
            out[name] = out.get(name, 0.0) + count * access_pj(nbytes, bits)
    return out


def energy_pj(cost: Cost) -> float:
    """Total modelled energy in picojoules of the product described by ``cost``."""
    return float(sum(energy_breakdown(cost).values()))
