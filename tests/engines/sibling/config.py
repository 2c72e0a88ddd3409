"""Settings the engine beside this file imports (`from config import ...`)."""
RELU_SLOPE_BELOW_ZERO = 0.0
