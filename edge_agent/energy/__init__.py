"""Energy per asset: active power from the device profile's electrical signals, energy integrated
over valid samples, specific energy per unit of product, and the `efficiency` judgement against
the asset's own normal data. Pure stages, no I/O (docs/UPSTREAM.md, `energy/1`)."""
