"""Mark: read the metadata store in one snapshot and decide, for every artifact version
in scope, whether it is reachable and why; the decision becomes a manifest."""
