"""Entry script for the static runnerd-gpu-setup binary (PyInstaller + staticx; see build-static.sh)."""

from runnerd.gpu.cli import entrypoint

entrypoint()
