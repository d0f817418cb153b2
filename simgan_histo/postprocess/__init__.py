"""Instance post-processing: watershed, polygons, morphometry."""
