"""A1111's `modules.processing_scripts` package (its built-in always-on scripts)."""
