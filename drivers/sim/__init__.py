"""Simulated sensors: scenario targets → real wire bytes → pseudo-terminals → the real drivers."""
