"""Simulated labelers: rehearse the loop, test it end to end, load-test the labeling API.

They act only through the public REST API (``GET /api/v1/tasks/next``, ``POST
/api/v1/tasks/{id}/submission``), so anything they do a person or a vendor could do. This
package imports nothing else of the app. See docs/evaluation.md ("Simulated labelers").

    from app.simulation import simulate, SimulatedLabeler, RandomRanker, preferences
    simulate([client_a, client_b], preferences.keyword, agreement=0.73, kinds=["evaluation"])
"""

from app.simulation import preferences
from app.simulation.behaviours import (
    Behaviour,
    FirstShownBest,
    PreferenceFollowing,
    RandomRanker,
    make_behaviour,
    noise_for,
)
from app.simulation.runner import (
    KINDS,
    SimulatedLabeler,
    Simulation,
    SimulationError,
    Summary,
    UsageError,
    simulate,
)

__all__ = [
    "KINDS",
    "Behaviour",
    "FirstShownBest",
    "PreferenceFollowing",
    "RandomRanker",
    "SimulatedLabeler",
    "Simulation",
    "SimulationError",
    "Summary",
    "UsageError",
    "make_behaviour",
    "noise_for",
    "preferences",
    "simulate",
]
