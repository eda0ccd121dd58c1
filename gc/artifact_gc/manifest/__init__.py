"""The manifest: a mark's decision, as a self-describing Parquet file.

  format     the contract: name, version, columns, metadata; read_info, check_format, verify
  checksum   the checksum rule of each format version
  publish    writing a manifest (whole or in parts), published atomically
  views      DuckDB that reads a manifest in place, in one shape for every 1.x version
  locations  where manifests live, and whether a location can be written
  reasons    the words of a manifest: item kinds, statuses, reasons
"""
