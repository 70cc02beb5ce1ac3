"""Scale-out: GPU workers on other machines behind one front end, on Celery with a Redis broker.

`--queue redis://...` makes the web server a front end: its job queue stays the one seam (fair
order, positions, interrupt), and generation jobs run on workers (`--worker --queue ...`) that
announce themselves in Redis. Without `--queue` nothing here is used.
"""
