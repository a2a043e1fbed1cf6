"""The training runtime: one loop under every pipeline (see docs/architecture.md)."""
