"""runnerd: GitHub Actions self-hosted runners on Kubernetes, only while there is work for them."""

__version__ = "0.1.0"
