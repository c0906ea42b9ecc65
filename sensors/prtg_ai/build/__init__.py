"""Build-time renderers: lookups (.ovl), device templates (.odt) and the generated blocks of the docs."""
