"""Synthetic demo tasks and data: real speech and music synthesised offline.

:mod:`.synth` (the engines: espeak-ng, flite, fluidsynth), :mod:`.demo_tasks` (HEAR tasks
built from them) and :mod:`.demo_data` (the demo's task set and pretraining corpus).
"""
