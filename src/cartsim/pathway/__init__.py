"""Vein-to-vein care-pathway event simulation (SimPy). Not built yet."""

__all__: list[str] = []
