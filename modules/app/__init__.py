"""The application's composition root (bootstrap.py): the one place that builds services."""
