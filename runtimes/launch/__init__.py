"""The image's entrypoint, as a small package (`python -m runtimes.launcher` forwards here).

settings (environment -> Settings), target (the hardware: detected or PACKAGER_HARDWARE), decide (re-plan
within the image's profiles), weights (volume mode: once per claim, under a lock), engine_env
(what the engine inherits), lws (leader / worker of a LeaderWorkerSet group), launch_record (the
dry run's launch record), __main__ (the order of those steps).
"""
