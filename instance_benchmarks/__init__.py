"""trainfleet instance benchmarks: catalog, pricing, harness, campaigns, reports, model download."""
