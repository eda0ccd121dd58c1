"""Offline review of manifests, one module per command.

  session   an open manifest (views ``manifest`` and ``journal``), the shipped queries
  progress  how far a manifest's sweep got, from its journal
  show      gc show        query   gc query       filter  gc filter (can only narrow)
  diff      gc diff        history gc history     report  gc report (one HTML page)
"""
