"""Build-time renderers: README/doc tables, lookups (.ovl) and device templates (.odt) from the catalogue."""
