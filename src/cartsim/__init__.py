"""cartsim: an open-source digital twin of CAR-T cell therapy, vein to vein and beyond.

The package is organised by stage of the chain, data flowing one way:

``params`` -> ``patient`` (+ ``toxicity``) -> ``population`` -> ``manufacturing`` ->
``pathway`` -> ``economics`` -> ``scenario`` -> ``report``; ``cli`` wraps them.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
