"""Alloys and flux agents the booth knows: melting range and autoignition point.

Values are conservative handbook figures. A recipe may only pick from these tables, so no recipe
can bring its own (possibly optimistic) melting or ignition point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal


@dataclass(frozen=True, slots=True)
class Alloy:
    name: str
    solidus_c: float
    liquidus_c: float
    gold_bearing: bool = False


ALLOYS: MappingProxyType[str, Alloy] = MappingProxyType(
    {
        a.name: a
        for a in (
            Alloy("Au88Ge12", 356.0, 356.0, gold_bearing=True),
            Alloy("Au80Sn20", 280.0, 280.0, gold_bearing=True),
            Alloy("Sn99.3Cu0.7", 227.0, 227.0),
            Alloy("Sn96.5Ag3.5", 221.0, 221.0),
            Alloy("SAC305", 217.0, 220.0),
            Alloy("Sn63Pb37", 183.0, 183.0),
            Alloy("Sn42Bi58", 138.0, 138.0),
            Alloy("In52Sn48", 118.0, 118.0),
        )
    }
)

#: The solvent classes a flux may be made of; a ``mixture`` names two or more of them.
SolventClass = Literal["alcohol", "ketone", "ester", "ether"]
FluxAgent = Literal["alcohol", "ketone", "ester", "ether", "mixture"]

#: Lowest autoignition temperature of the common solvents of each class, in C. Alcohol: ethanol
#: 363 (isopropanol 399); ketone: methyl ethyl ketone 404; ester: butyl acetate ~370; ether:
#: diethyl ether 160 (glycol ethers are higher, but the class must cover its worst member). With
#: the 50 C margin of the recipe rules, an ether flux allows a bath of 110 C at most: under every
#: alloy's liquidus, so no recipe can use one with molten solder, and the recipe error says so.
#: A mixture is only as safe as its most ignitable component: a recipe's mixture names its
#: solvent classes (``flux.components``) and takes the lowest of their figures
#: (``flux_autoignition_c``); the 160 C here is the worst case, for a mixture that names none.
FLUX_AUTOIGNITION_C: MappingProxyType[str, float] = MappingProxyType(
    {
        "alcohol": 363.0,
        "ketone": 404.0,
        "ester": 370.0,
        "ether": 160.0,
        "mixture": 160.0,
    }
)

#: Why each class ignites where it does, for the recipe errors.
FLUX_AUTOIGNITION_BASIS: MappingProxyType[str, str] = MappingProxyType(
    {
        "alcohol": "ethanol",
        "ketone": "methyl ethyl ketone",
        "ester": "butyl acetate",
        "ether": "diethyl ether",
        "mixture": "its worst possible component, diethyl ether",
    }
)


def flux_autoignition_c(agent: str, components: Sequence[str] | None = None) -> float:
    """The autoignition point a flux is judged by: a mixture's is its lowest component's."""
    if agent == "mixture" and components:
        return min(FLUX_AUTOIGNITION_C[c] for c in components)
    return FLUX_AUTOIGNITION_C[agent]
