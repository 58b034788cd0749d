"""Networks and model bundles (pure torch: no streamlit, lightning or core imports)."""
