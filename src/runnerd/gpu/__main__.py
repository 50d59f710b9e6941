"""``python -m runnerd.gpu``: the same as ``runnerd-gpu-setup``."""

from __future__ import annotations

from runnerd.gpu.cli import entrypoint

if __name__ == "__main__":
    entrypoint()
