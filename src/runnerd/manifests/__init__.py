"""Pure builders of the Kubernetes objects runnerd creates: spec in, manifest out (no I/O)."""
