"""The run folder: its typed model, who may write where, and the view with images."""
