"""Data sources: the sample pack (and, later, Earth Engine and uploads), each returning GeoRasters."""
