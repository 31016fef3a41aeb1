"""Measuring models: image metrics (`metrics`), the super-resolution protocol (`sr`), paired
translation scores (`paired`) and distribution metrics (`distribution`, `features`)."""
