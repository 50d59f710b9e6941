"""runnerd-gpu-setup: make the GPUs of a runner's dockerd container usable by job containers.

Runs inside runner images (and, copied as a static binary, in the ``docker:dind`` sidecar) before
dockerd starts. It finds what the node's NVIDIA runtime put into this container — the GPU device
nodes, the driver libraries, ``nvidia-smi`` — and writes a CDI spec (``/etc/cdi/nvidia.yaml``) so
``docker run --device nvidia.com/gpu=all`` and ``docker run --gpus all`` work in jobs.

Standard library only, no imports from the rest of runnerd, Python 3.8 syntax at run time (the
real-hardware check runs with whatever ``python3`` a GPU machine has). See docs/gpu.md and the
"GPU runners" section of docs/runner-pods.md (the contract this package implements).
"""
