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

#: Lowest autoignition temperature (AIT) of the common solvents of each class, in C: the class
#: must cover its worst member, and where sources differ the lower figure is kept. An AIT depends
#: on the test (ASTM E659 / EN 14522: a heated 500 mL flask), so a margin is kept under it
#: (``AUTOIGNITION_MARGIN_C``). Sources (facts only):
#:   alcohol 363: ethanol, 363 C (NFPA 325 via the "Autoignition temperature" table of
#:     Wikipedia; other handbooks give 365 C); isopropanol is higher, 399 C (same table).
#:   ketone 404: methyl ethyl ketone (2-butanone), 404 C (NFPA 325 data; unconfirmed against a
#:     second source here); acetone is higher, 465 C (Lange's Handbook of Chemistry, table 5.23
#:     "Properties of combustible mixtures in air").
#:   ester 370: n-butyl acetate, 370 C (its NIOSH / NFPA data, as in its Wikipedia infobox; a
#:     vendor sheet gives 407 C, the lower is kept); allyl acetate 374 C (Lange's table 5.23).
#:   ether 160: diethyl ether, 160 C (NFPA 325; Lange's table 5.23 and DIPPR 801 agree within a
#:     few degrees); glycol ethers are higher, but the class covers its worst member.
#: With the 50 C margin an ether flux allows a bath of 110 C at most: under every alloy's
#: liquidus, so no recipe can use one with molten solder, and the recipe error says so.
#: A mixture is only as safe as its most ignitable component: a mixture names its solvent
#: classes (``flux.components``) and takes the lowest of their figures (``flux_autoignition_c``);
#: the 160 C here is the worst case, for a mixture that names none.
FLUX_AUTOIGNITION_C: MappingProxyType[str, float] = MappingProxyType(
    {
        "alcohol": 363.0,
        "ketone": 404.0,
        "ester": 370.0,
        "ether": 160.0,
        "mixture": 160.0,
    }
)

#: The hottest the solder may get (a setpoint + its band, the over-temperature trip
#: ``limits.temp_max_c``) stays this far under the flux's autoignition point: the AIT is a flask
#: figure, a bath's surface and its fumes near the flux vessel are not a flask, and a
#: controller overshoots its setpoint before the trip acts.
AUTOIGNITION_MARGIN_C = 50.0

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


def ignition_ceiling_c(agent: str, components: Sequence[str] | None = None) -> float:
    """The solder must stay under this with this flux near it: its autoignition less the margin."""
    return flux_autoignition_c(agent, components) - AUTOIGNITION_MARGIN_C


def flux_kind(agent: str, components: Sequence[str] | None = None) -> str:
    """``alcohol flux``, or ``mixture flux of ketone+alcohol``, for the errors."""
    if agent == "mixture" and components:
        return f"mixture flux of {'+'.join(components)}"
    return f"{agent} flux"


def components_problems(field: str, agent: str, components: Sequence[str] | None) -> list[str]:
    """A mixture names its solvent classes, each once; any other flux names none."""
    if agent == "mixture" and components is None:
        return [
            f"{field}: required for a mixture flux: name its solvent classes (two or more of "
            "alcohol, ketone, ester, ether); it is judged by the lowest autoignition point "
            "among them"
        ]
    if agent != "mixture" and components is not None:
        return [f"{field}: only a mixture flux names components, not {agent}"]
    if components is not None and len(set(components)) != len(components):
        return [f"{field}: {list(components)} names a solvent class twice"]
    return []
