"""5.8 GHz analog FPV video detection: RX5808 receivers tuned over GPIO, RSSI through an MCP3008.

`rx5808` is the sans-IO register protocol, `hardware` the bus protocols and the lazy Blinka
implementations, `scanner` the sweep, noise floor, detection and the driver. Nothing here imports
Blinka at import time.
"""
