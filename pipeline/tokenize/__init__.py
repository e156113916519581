"""The tokenize stage: its Beam wiring in stage.py, its plain logic in the modules beside it."""
