"""Physical constants every layer agrees on (one definition each)."""

SPEED_OF_SOUND_MPS = 343.0
"""In air at about 20 °C; the acoustic models, direction finding and the simulator all use it."""
