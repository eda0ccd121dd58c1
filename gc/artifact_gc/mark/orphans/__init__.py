"""Orphan files: what ZenML leaves in an artifact store with no row (``gc mark --orphan-files``).

listing.py streams every object of every store (or an inventory) into DuckDB,
named.py reads every path the database names, layout.py says what ZenML's layout
makes of a path, classify.py decides, and run.py ties them into the mark.
"""
