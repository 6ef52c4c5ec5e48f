"""Runs in the IPython kernel (the views in the browser): anywidget run graphs and run
tables, plotly timelines and their static JavaScript and CSS. Imports ``client`` and
``core``.
"""
