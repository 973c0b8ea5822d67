"""Gradio UI: the chat tab for everyone, admin tabs for admins. See app.py for mounting."""
