"""Routing: the catalog, candidate selection, the sans-IO cascade, its drivers and the decision record.

The modules import only downward (model_call and tokens at the bottom, cascade above selection,
caller above cascade); this ``__init__`` imports nothing so that checks can use ``model_call``.
"""
