"""Device simulators with physics-flavoured fault scenarios, served over real protocols."""
