"""helpline-serve: the OpenCHS case classifier on Ray Serve.

Pure logic (labels, text, windowing, aggregation, routing, batching, model)
lives in modules that never import Ray; ``deployments.app`` holds the thin
Ray Serve shells and the one entry point, ``build_app``.
"""
