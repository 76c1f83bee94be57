"""cartsim: an open-source digital twin of CAR-T cell therapy, vein to vein and beyond.

The package is organised by stage of the chain, data flowing one way:

``params`` -> ``patient`` (+ ``toxicity``) -> ``population`` -> ``manufacturing`` ->
``pathway`` -> ``economics`` -> ``scenario`` -> ``report``; ``cli`` wraps them.
"""

from __future__ import annotations

import jax

# The in-vivo model integrates log cell numbers spanning ~25 decades: float64 throughout.
jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

__all__ = ["__version__"]
