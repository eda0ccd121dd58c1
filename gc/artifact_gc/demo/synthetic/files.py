"""The files of a synthetic local artifact store: one directory per version."""

from __future__ import annotations

import os

from artifact_gc.demo.synthetic.encoding import local_path


def write_files(files: list[tuple[str, str]], root: str, store_id: str) -> None:
    """Create each version's directory with its visualization file and a data file.

    ``files`` holds (version URI, visualization file name) pairs.
    """
    base = local_path(root)
    for uri, vis_name in files:
        path = local_path(uri)
        if not path.startswith(base):
            raise ValueError(f"{uri} is outside the store root {root}")
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, vis_name), "w") as fh:
            fh.write('{"synthetic": true}\n')
        with open(os.path.join(path, "artifact.bin"), "wb") as fh:
            fh.write(store_id.encode() + b"\n" * 32)
