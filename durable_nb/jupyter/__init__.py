"""Runs in the Jupyter server process: the server extension that hosts the engine behind
Jupyter's auth, and the JupyterLab panel's discovery. Imports ``server``, ``engine`` and
``core``.
"""
