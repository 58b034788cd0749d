"""The LULC Explorer library: rasters, bands, class schemes, sources, tiled inference, metrics.

Never imports streamlit or lightning.
"""
