"""The controllers: business rules from runnerd.reconcile wired to the runtime and the adapters."""
