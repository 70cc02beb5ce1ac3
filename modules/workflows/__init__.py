"""Use cases the UI and the API share: the job runner, settings and checkpoint changes, extras."""
