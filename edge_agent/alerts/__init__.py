"""Alert policy (pure) and the JSON messages published upstream."""
