"""Ingest: masters (TIFF, JPEG, PNG, JPEG 2000) into tiled pyramidal TIFFs ready to serve.

An offline tool, like ``demo/``: the DESIGN rule "pyvips only in probe/render/tiles" is widened
to this package, which runs libvips pipelines of its own (``convert.py``, ``metadata.py``) and
reads headers (``batch.py`` through ``convert.inspect``). Nothing here runs per request.

    plan.py      pure: sources -> outputs, collisions, options, up-to-date rule, memory admission
    stamp.py     the sidecar that records which master and settings made an output
    metadata.py  which metadata crosses over (XMP, IPTC, EXIF rights and description, ICC)
    convert.py   one master -> one pyramid (the pyvips pipeline), atomically
    batch.py     many masters in parallel within a memory budget; the progress bar
    worker.py    a worker process of the pool: one master at a time, stopping cleanly
    report.py    outcomes and the summary
    describe.py  converted images -> an object description in manifests/
"""
