"""Browser tests (JupyterLab + Chromium); a package so its conftest does not shadow tests/conftest.py."""
