"""OPC UA: config, node profile, data-value mapping, client and its certificates."""
