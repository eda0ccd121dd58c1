"""artifact-gc: a mark-and-sweep garbage collector for ZenML artifact stores."""

__version__ = "0.1.0"
