"""Dashboard pages: thin Streamlit views over `snakeweb` (run through `app.py`)."""
