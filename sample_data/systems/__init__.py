"""One module per group of source systems; each system delivers its files day by day."""
