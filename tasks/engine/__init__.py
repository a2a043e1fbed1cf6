"""Run machinery: stage cache, lineage, tracking, records, catalog, shards, settings,
accelerator, parity."""
