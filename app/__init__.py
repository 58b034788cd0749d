"""The Streamlit shell: entry point, typed session state, cached resources, shared renderers."""
