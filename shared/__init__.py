"""Persist the files that Azure OpenAI's code interpreter makes into Blob Storage.

``function_app.py`` holds the bindings; everything else lives here, one job per module.
"""
