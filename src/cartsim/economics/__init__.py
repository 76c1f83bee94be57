"""Costs, QALYs, ICER and budget impact. Not built yet."""

__all__: list[str] = []
