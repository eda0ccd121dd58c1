"""What a ZenML store is: its schema (discovered by reflection), its artifact stores,
its config directory and store URL, and the references it keeps in JSON."""
