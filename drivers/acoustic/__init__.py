"""Acoustic array sensor: framed-PCM `protocol`, array `geometry`, SRP-PHAT direction finding
(`doa`), the drone-sound `features` and `detector`, the `driver`, and `decode`/scoring."""
