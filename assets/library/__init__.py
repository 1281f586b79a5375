"""staged -> library: the master elder index (identity resolution) and the thematic elder library."""
