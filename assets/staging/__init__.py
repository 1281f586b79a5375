"""raw -> staged: typed, normalised, conformed rows; hard-rule breaches to quarantine with reasons."""
