"""The undo window: a sweep's rows and files stay restorable until purged.

- rows.py / area.py: the rows each batch deletes, kept as segments beside the journal
  before the batch commits, and the sweep's record (window, how files are kept);
- files.py: each store's ``FileUndo`` (storage/trash.py) as the sweep, the restore
  and the purge open it;
- restore.py: ``gc restore``: files first, then rows, in foreign-key order;
- purge.py: ``gc trash empty``: what has passed its window goes for good.
"""
