"""Virtual cohorts, batched solving at scale, virtual trials and endpoints.

Not built yet (issue "Virtual populations and virtual trials at scale"). The batched
engine it will stand on is :func:`cartsim.patient.solve_batch`.
"""

__all__: list[str] = []
