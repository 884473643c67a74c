"""5.8 GHz analog FPV video detection: RX5808 receivers tuned over GPIO, RSSI through an MCP3008.

`rx5808` is the sans-IO register protocol, `hardware` the bus protocols and the lazy Blinka
implementations, `rssi` the RSSI curve, antennas and RSSI-ratio bearing, `sweep` the noise floor and
detection with hysteresis, `scanner` the driver that tunes, waits and samples. Nothing here imports
Blinka at import time.
"""
