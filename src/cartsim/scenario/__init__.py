"""Validated scenario files and the end-to-end runner (``cartsim run``). Not built yet."""

__all__: list[str] = []
