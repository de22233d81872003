"""Helpers shared by methods, metrics, ``explain``, evaluation and the service, that are not
methods themselves. They sit one layer above the foundation (errors, options, registry, work) and
below models, so every higher layer may use them:

* :mod:`.align` — a method's map back onto the clip's original frames (time, crop box);
* :mod:`.refine` — the deterministic STAA-style refinement of raw maps, and stream smoothing;
* :mod:`.baselines` — what an "absent" pixel, region or frame is replaced by (registered by name);
* :mod:`.batching` — the chunked loop with cancellation checkpoints;
* :mod:`.resize` — resizing frames and maps for display.
"""
